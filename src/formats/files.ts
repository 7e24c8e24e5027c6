import fs from "node:fs";
import path from "node:path";
import { fileError } from "../errors.js";
import { describeErrno } from "./outputs.js";
import { describeJsonError, jsonDepthProblem } from "./json-errors.js";

/** Read and parse a JSON file; any failure names the file. */
export function readJsonFile<T = unknown>(file: string): T {
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch (e) {
    throw fileError(file, `cannot read (${describeErrno(e)})`);
  }
  const deep = jsonDepthProblem(text);
  if (deep) throw fileError(file, deep);
  try {
    return JSON.parse(text) as T;
  } catch {
    throw fileError(file, describeJsonError(text));
  }
}

/**
 * Write a file atomically: the content goes to a temporary name beside it and is renamed into
 * place, so an interrupted write never leaves a half-written file under the real name.
 */
export function writeFileAtomic(file: string, data: string | Uint8Array): void {
  fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  trackTemporary(tmp);
  try {
    fs.writeFileSync(tmp, data);
    fs.renameSync(tmp, file);
  } catch (e) {
    fs.rmSync(tmp, { force: true });
    throw e;
  } finally {
    untrackTemporary(tmp);
  }
}

/** Like writeFileAtomic, but the content is produced by a callback writing to a file descriptor. */
export function writeWithFdAtomic(file: string, write: (fd: number) => void): void {
  fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  trackTemporary(tmp);
  const fd = fs.openSync(tmp, "w");
  try {
    write(fd);
    fs.closeSync(fd);
    fs.renameSync(tmp, file);
  } catch (e) {
    try {
      fs.closeSync(fd);
    } catch {
      /* already closed */
    }
    fs.rmSync(tmp, { force: true });
    throw e;
  } finally {
    untrackTemporary(tmp);
  }
}

/** Temporary paths being written; removed if the process exits before they are renamed. */
const temporaries = new Set<string>();
let hooked = false;

/** Count `p` (a file or folder) as temporary until `untrackTemporary`. */
export function trackTemporary(p: string): void {
  temporaries.add(p);
  if (!hooked) {
    hooked = true;
    process.on("exit", () => {
      for (const t of temporaries) {
        try {
          fs.rmSync(t, { recursive: true, force: true });
        } catch {
          /* best effort */
        }
      }
    });
  }
}

export function untrackTemporary(p: string): void {
  temporaries.delete(p);
}
