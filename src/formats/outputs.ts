/**
 * The one guard every command's outputs pass before anything is computed or written:
 * - no output is inside, equal to, or a parent of an input folder (the model, the judge model, a
 *   data folder) or equal to (or, for folders, a parent of) an input file, after resolving symlinks;
 * - an existing single-file output needs --force and must be a plain file;
 * - an existing output folder is only replaced with --force, and only if cosmic made it (a marker
 *   file inside); a run folder is only written if it is new, empty or a cosmic run folder;
 * - the place is writable (probed with a temporary file), so a long computation never ends in
 *   EACCES/EROFS.
 */
import fs from "node:fs";
import path from "node:path";
import { CosmicError, fileError } from "../errors.js";

/** A path a command reads: its outputs must keep clear of it. */
export interface Input {
  path: string;
  /** what it is, for the message: "the model folder", "the prompts file", … */
  what: string;
}

/** Marker of a run folder made by `cosmic run` (older runs have only the stage records). */
export const RUN_MARKER = ".cosmic-run";
const RUN_MARKERS = [RUN_MARKER, ".cosmic-stages.json"];
/** Marker of a model folder written by cosmic (`export abliterate`). */
export const EXPORT_MARKER = ".cosmic-export";

/**
 * The real path of `p`, which need not exist yet: the deepest existing ancestor is resolved
 * (symlinks followed) and the rest appended.
 */
export function realPathOf(p: string): string {
  const abs = path.resolve(p);
  let head = abs;
  const tail: string[] = [];
  for (;;) {
    let exists = true;
    try {
      fs.lstatSync(head);
    } catch {
      exists = false;
    }
    if (exists) {
      try {
        return path.join(fs.realpathSync(head), ...tail);
      } catch (e) {
        throw fileError(p, `cannot resolve (${describeErrno(e)})`);
      }
    }
    const up = path.dirname(head);
    if (up === head) return abs;
    tail.unshift(path.basename(head));
    head = up;
  }
}

const within = (inner: string, outer: string) =>
  inner === outer || inner.startsWith(outer.endsWith(path.sep) ? outer : outer + path.sep);

function isDir(p: string): boolean {
  try {
    return fs.statSync(p).isDirectory();
  } catch {
    return false;
  }
}

/** Refuse an output that overlaps an input. `folder`: the output is a folder (it may be replaced whole). */
export function checkClearOfInputs(out: string, inputs: Input[], folder: boolean): void {
  const o = realPathOf(out);
  for (const inp of inputs) {
    if (!fs.existsSync(inp.path)) continue;
    const i = realPathOf(inp.path);
    if (o === i) throw fileError(out, `is ${inp.what} (${inp.path}): outputs never replace an input`);
    if (isDir(i) && within(o, i))
      throw fileError(out, `is inside ${inp.what} ${inp.path}: choose an output outside it`);
    if ((folder || isDir(i)) && within(i, o))
      throw fileError(out, `contains ${inp.what} ${inp.path}: choose an output that does not`);
  }
}

/**
 * Check that a file can be created at `file` without creating it: the nearest existing ancestor
 * must be a folder we can write (a temporary file is made and removed there).
 */
export function probeWritable(target: string): void {
  let dir = path.dirname(path.resolve(target));
  while (!fs.existsSync(dir)) {
    const up = path.dirname(dir);
    if (up === dir) break;
    dir = up;
  }
  if (!isDir(dir)) throw fileError(target, `${dir} is not a folder`);
  const probe = path.join(dir, `.cosmic-probe.${process.pid}`);
  try {
    fs.writeFileSync(probe, "");
  } catch (e) {
    throw fileError(target, `cannot write in ${dir} (${describeErrno(e)})`);
  } finally {
    try {
      fs.rmSync(probe, { force: true });
    } catch {
      /* nothing to remove */
    }
  }
}

/** A single-file output: the right extension, not an input, replaced only with --force, writable. */
export function prepareFileOutput(
  file: string,
  o: { ext?: string; force?: boolean; inputs: Input[]; flag?: string },
): void {
  const flag = o.flag ?? "--out";
  if (o.ext && path.extname(file).toLowerCase() !== o.ext)
    throw new CosmicError(`${flag} must name a ${o.ext} file, got "${file}"`);
  checkClearOfInputs(file, o.inputs, false);
  let st: fs.Stats | null = null;
  try {
    st = fs.statSync(file);
  } catch {
    st = null;
  }
  if (st) {
    if (!st.isFile())
      throw fileError(file, `exists and is not a plain file (${st.isDirectory() ? "a folder" : "a device or socket"})`);
    if (!o.force) throw fileError(file, "exists: pass --force to replace it");
  }
  probeWritable(file);
}

function hasMarker(dir: string, markers: readonly string[]): boolean {
  return markers.some((m) => fs.existsSync(path.join(dir, m)));
}

function entries(dir: string): string[] {
  try {
    return fs.readdirSync(dir);
  } catch (e) {
    throw fileError(dir, `cannot read (${describeErrno(e)})`);
  }
}

/**
 * A folder output that is written whole and swapped in (an abliterated checkpoint, an organism):
 * new or empty is fine; an existing one is replaced only with --force and only if it holds
 * `marker` (cosmic wrote it). Never a folder of the user's.
 */
export function prepareFolderOutput(
  dir: string,
  o: { force?: boolean; inputs: Input[]; markers: readonly string[]; what: string },
): void {
  checkClearOfInputs(dir, o.inputs, true);
  if (fs.existsSync(dir)) {
    if (!isDir(dir)) throw fileError(dir, "exists and is not a folder");
    if (entries(dir).length > 0) {
      if (!hasMarker(dir, o.markers))
        throw fileError(
          dir,
          `exists and is not ${o.what} written by cosmic (no ${o.markers[0]} inside): choose another --out; ` +
            `cosmic never replaces a folder it did not make`,
        );
      if (!o.force) throw fileError(dir, `already holds ${o.what}: pass --force to replace it`);
    }
  }
  probeWritable(path.join(dir, "x"));
}

/** Remove a folder only if cosmic made it (marker inside) or it is empty. */
export function removeOwnedFolder(dir: string, markers: readonly string[]): void {
  if (!fs.existsSync(dir)) return;
  if (!isDir(dir)) throw fileError(dir, "exists and is not a folder");
  if (entries(dir).length > 0 && !hasMarker(dir, markers))
    throw fileError(dir, "was not made by cosmic: not removing it");
  fs.rmSync(dir, { recursive: true, force: true });
}

/**
 * A run folder: new, empty, or a cosmic run folder (marker). It is created with its marker now,
 * which also proves it writable before the long computation.
 */
export function prepareRunFolder(dir: string, inputs: Input[]): void {
  checkClearOfInputs(dir, inputs, true);
  if (fs.existsSync(dir)) {
    if (!isDir(dir)) throw fileError(dir, "exists and is not a folder: --out names the run folder");
    if (entries(dir).length > 0 && !isRunFolder(dir)) {
      throw fileError(
        dir,
        `is not empty and is not a cosmic run folder (no ${RUN_MARKER} inside): choose a new or empty --out`,
      );
    }
  }
  try {
    fs.mkdirSync(dir, { recursive: true });
    const marker = path.join(dir, RUN_MARKER);
    if (!fs.existsSync(marker)) fs.writeFileSync(marker, JSON.stringify({ made_by: "cosmic run" }) + "\n");
  } catch (e) {
    throw fileError(dir, `cannot write (${describeErrno(e)})`);
  }
}

/** Whether `dir` is a run folder cosmic made (its marker, or an older run's stage records). */
export function isRunFolder(dir: string): boolean {
  return hasMarker(dir, RUN_MARKERS);
}

const LOCK = ".cosmic-lock";

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * An exclusive lock on a run folder (a file holding the pid), released when the process exits.
 * A lock left by a process that no longer runs is taken over.
 */
export function lockFolder(dir: string): () => void {
  const file = path.join(dir, LOCK);
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      fs.writeFileSync(file, `${process.pid}\n`, { flag: "wx" });
      const release = () => {
        try {
          if (fs.readFileSync(file, "utf8").trim() === String(process.pid)) fs.rmSync(file, { force: true });
        } catch {
          /* already gone */
        }
        process.removeListener("exit", release);
      };
      process.on("exit", release);
      return release;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw fileError(dir, `cannot write (${describeErrno(e)})`);
      let pid = NaN;
      try {
        pid = Number(fs.readFileSync(file, "utf8").trim());
      } catch {
        /* removed meanwhile */
      }
      if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && alive(pid)) {
        throw fileError(
          dir,
          `in use by pid ${pid} (another cosmic command is writing this run folder): wait for it, or ` +
            `choose another --out`,
        );
      }
      fs.rmSync(file, { force: true });
    }
  }
  throw fileError(dir, "could not take the run folder's lock");
}

const ERRNO: Record<string, string> = {
  EACCES: "permission denied",
  EPERM: "operation not permitted",
  EROFS: "read-only file system",
  ENOSPC: "no space left on the device",
  EDQUOT: "disk quota exceeded",
  EEXIST: "already exists",
  EISDIR: "is a folder, not a file",
  ENOTDIR: "a part of the path is not a folder",
  ELOOP: "too many levels of symbolic links",
  ENOENT: "no such file or folder",
  ENAMETOOLONG: "name too long",
  EMFILE: "too many open files",
  EBUSY: "busy",
  EINVAL: "invalid argument for this file system",
  EIO: "input/output error",
  EFBIG: "file too large for this file system",
  ENOTEMPTY: "folder not empty",
  EXDEV: "cannot move across file systems",
};

/** "permission denied (EACCES)" for an errno error, else its message. */
export function describeErrno(e: unknown): string {
  const code = (e as NodeJS.ErrnoException)?.code;
  if (code && ERRNO[code]) return `${ERRNO[code]} (${code})`;
  return code ?? String((e as Error)?.message ?? e);
}

/** A filesystem error from Node (with a code and a path) as one user-facing line; null if it is not one. */
export function fsErrorLine(e: unknown): string | null {
  const err = e as NodeJS.ErrnoException;
  if (!err || typeof err !== "object" || typeof err.code !== "string" || !ERRNO[err.code]) return null;
  const where = err.path ?? (err as { dest?: string }).dest ?? "";
  return `${where ? `${where}: ` : ""}${describeErrno(err)}${err.syscall ? ` during ${err.syscall}` : ""}`;
}
