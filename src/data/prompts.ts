/**
 * Prompt sets: a JSON array of strings or of objects with an `instruction` field (the
 * reference datasets' format), JSON Lines, or CSV with an `instruction`, `prompt` or `goal`
 * column.
 */
import fs from "node:fs";
import path from "node:path";
import { parse as parseCsv } from "csv-parse/sync";
import { fileError } from "../errors.js";
import { Rng } from "../util/random.js";
import { describeJsonError, jsonDepthProblem } from "../formats/json-errors.js";
import { describeErrno } from "../formats/outputs.js";

export interface PromptRecord {
  instruction: string;
  category?: string;
  /** what the instruction asks for, in words a reply that carries it out names (organism splits) */
  task?: string;
}

function extras(o: Record<string, unknown>): Pick<PromptRecord, "category" | "task"> {
  return {
    ...(typeof o.category === "string" && o.category ? { category: o.category } : {}),
    ...(typeof o.task === "string" && o.task.trim() ? { task: o.task } : {}),
  };
}

const FIELDS = ["instruction", "prompt", "goal"] as const;

function fromValue(v: unknown, file: string, where: string): PromptRecord {
  if (typeof v === "string") {
    if (!v.trim()) throw fileError(file, `${where}: empty instruction`);
    return { instruction: v };
  }
  if (v && typeof v === "object" && !Array.isArray(v)) {
    const o = v as Record<string, unknown>;
    for (const f of FIELDS) {
      if (typeof o[f] === "string") {
        if (!(o[f] as string).trim()) throw fileError(file, `${where}: empty "${f}"`);
        return { instruction: o[f] as string, ...extras(o) };
      }
    }
    throw fileError(file, `${where}: object has no string "instruction", "prompt" or "goal" field`);
  }
  throw fileError(
    file,
    `${where}: expected a string or an object with an "instruction" field, got ` + `${JSON.stringify(v)?.slice(0, 40)}`,
  );
}

function parseJsonArray(text: string, file: string): PromptRecord[] {
  const deep = jsonDepthProblem(text);
  if (deep) throw fileError(file, deep);
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch {
    throw fileError(file, describeJsonError(text));
  }
  if (!Array.isArray(data)) throw fileError(file, "expected a JSON array of instructions");
  return data.map((v, i) => fromValue(v, file, `item ${i}`));
}

function parseJsonl(text: string, file: string): PromptRecord[] {
  const out: PromptRecord[] = [];
  text.split("\n").forEach((line, i) => {
    if (!line.trim()) return;
    let v: unknown;
    const deep = jsonDepthProblem(line);
    if (deep) throw fileError(file, `line ${i + 1}: ${deep}`);
    try {
      v = JSON.parse(line);
    } catch {
      throw fileError(file, `line ${i + 1}: ${describeJsonError(line).replace(/^line 1, /, "")}`);
    }
    out.push(fromValue(v, file, `line ${i + 1}`));
  });
  return out;
}

function parseCsvText(text: string, file: string): PromptRecord[] {
  let rows: Record<string, string>[];
  try {
    rows = parseCsv(text, { columns: true, skip_empty_lines: true, bom: true }) as Record<string, string>[];
  } catch (e) {
    const err = e as Error & { lines?: number };
    throw fileError(file, `${err.lines ? `line ${err.lines}: ` : ""}invalid CSV (${err.message})`);
  }
  if (rows.length === 0) return [];
  const cols = Object.keys(rows[0]);
  const col = FIELDS.find((f) => cols.includes(f));
  if (!col) throw fileError(file, `no "instruction", "prompt" or "goal" column (columns: ${cols.join(", ")})`);
  return rows.map((r, i) => {
    const v = r[col];
    if (!v || !v.trim()) throw fileError(file, `line ${i + 2}: empty "${col}"`);
    return { instruction: v, ...extras(r) };
  });
}

/** Load a prompt set; the format is told by the extension (.json, .jsonl, .csv). */
export function loadPrompts(file: string): PromptRecord[] {
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch (e) {
    throw fileError(file, `cannot read (${describeErrno(e)})`);
  }
  if (!text.trim()) throw fileError(file, "is empty: expected a list of instructions");
  const ext = path.extname(file).toLowerCase();
  const recs =
    ext === ".csv"
      ? parseCsvText(text, file)
      : ext === ".jsonl" || ext === ".ndjson"
        ? parseJsonl(text, file)
        : text.trimStart().startsWith("[")
          ? parseJsonArray(text, file)
          : parseJsonl(text, file);
  if (recs.length === 0) throw fileError(file, "holds no instructions");
  return recs;
}

/**
 * Seeded sample of at most `limit` records (all of them, in file order, when no limit). A limit
 * larger than the file gets one warning line through `warn`, with the numbers used.
 */
export function selectPrompts(
  recs: PromptRecord[],
  limit: number | undefined,
  seed: number,
  warn?: { flag: string; file: string; say: (line: string) => void },
): PromptRecord[] {
  if (limit !== undefined && limit > recs.length && warn)
    warn.say(
      `warning: ${warn.flag} ${limit} but ` + `${warn.file} has ${recs.length} prompts: using all ${recs.length}`,
    );
  if (limit === undefined || limit >= recs.length) return recs;
  return new Rng(seed).sample(recs, limit);
}
