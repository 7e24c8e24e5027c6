/**
 * safetensors: the 8-byte little-endian header length, a JSON header of
 * `{name: {dtype, shape, data_offsets}}` plus optional string `__metadata__`, then the data.
 * Reading is streamed: only the header is read at open time, each tensor on demand, so a
 * multi-GB checkpoint is never copied whole into memory.
 */
import fs from "node:fs";
import path from "node:path";
import { fileError } from "../errors.js";
import { DType, decodeToF32, dtypeBytes, encodeFromF32, isDType, SUPPORTED_DTYPES } from "./dtype.js";
import { readJsonFile, writeWithFdAtomic } from "./files.js";
import { jsonDepthProblem } from "./json-errors.js";
import { describeErrno } from "./outputs.js";

export interface TensorInfo {
  name: string;
  dtype: DType;
  shape: number[];
  /** byte range inside the data section */
  begin: number;
  end: number;
}

/** The safetensors format's own bound on the header (as the reference implementation). */
export const MAX_HEADER_BYTES = 100_000_000;
/** Tensors per file cosmic accepts (released checkpoints hold at most a few thousand per shard). */
export const MAX_TENSORS = 200_000;
/** One tensor is read into one buffer: Node's limit. */
const MAX_TENSOR_BYTES = 2 ** 32 - 1;

export class SafetensorsFile {
  readonly path: string;
  readonly tensors: Map<string, TensorInfo>;
  readonly metadata: Record<string, string>;
  private readonly dataStart: number;

  private constructor(
    file: string,
    tensors: Map<string, TensorInfo>,
    metadata: Record<string, string>,
    dataStart: number,
  ) {
    this.path = file;
    this.tensors = tensors;
    this.metadata = metadata;
    this.dataStart = dataStart;
  }

  static open(file: string): SafetensorsFile {
    let fd: number;
    try {
      fd = fs.openSync(file, "r");
    } catch (e) {
      throw fileError(file, `cannot open (${describeErrno(e)})`);
    }
    try {
      const size = fs.fstatSync(fd).size;
      if (size < 8)
        throw fileError(file, `truncated safetensors file (${size} bytes; the header length alone needs 8)`);
      const lenBuf = Buffer.alloc(8);
      fs.readSync(fd, lenBuf, 0, 8, 0);
      const headerLen = lenBuf.readBigUInt64LE(0);
      if (headerLen > BigInt(size - 8)) {
        throw fileError(file, `safetensors header length ${headerLen} runs past the end of the file (${size} bytes)`);
      }
      if (headerLen > BigInt(MAX_HEADER_BYTES)) {
        throw fileError(
          file,
          `safetensors header of ${headerLen} bytes is larger than the format's limit of ${MAX_HEADER_BYTES} bytes`,
        );
      }
      const n = Number(headerLen);
      const hbuf = Buffer.alloc(n);
      if (fs.readSync(fd, hbuf, 0, n, 8) !== n) throw fileError(file, "truncated safetensors header");
      const text = hbuf.toString("utf8");
      const deep = jsonDepthProblem(text, 8);
      if (deep) throw fileError(file, `safetensors header: ${deep}`);
      let header: unknown;
      try {
        header = JSON.parse(text);
      } catch (e) {
        throw fileError(file, `safetensors header is not valid JSON (${(e as Error).message})`);
      }
      if (typeof header !== "object" || header === null || Array.isArray(header)) {
        throw fileError(file, "safetensors header is not a JSON object");
      }
      const dataLen = size - 8 - n;
      const tensors = new Map<string, TensorInfo>();
      let metadata: Record<string, string> = {};
      for (const [name, v] of Object.entries(header as Record<string, unknown>)) {
        if (name === "__metadata__") {
          if (typeof v !== "object" || v === null || Object.values(v).some((x) => typeof x !== "string")) {
            throw fileError(file, "safetensors __metadata__ must map strings to strings");
          }
          metadata = v as Record<string, string>;
          continue;
        }
        tensors.set(name, parseEntry(file, name, v, dataLen));
      }
      if (tensors.size > MAX_TENSORS)
        throw fileError(file, `holds ${tensors.size} tensors, more than cosmic's bound of ${MAX_TENSORS} per file`);
      // The format's rule: the tensors cover the data section exactly, with no gaps or overlaps.
      const sorted = [...tensors.values()].sort((a, b) => a.begin - b.begin || a.end - b.end);
      let at = 0;
      for (const t of sorted) {
        if (t.begin < at)
          throw fileError(
            file,
            `tensor "${t.name}" overlaps the tensor before it (data_offsets [${t.begin}, ${t.end}])`,
          );
        if (t.begin > at)
          throw fileError(
            file,
            `gap in the data section before tensor "${t.name}" (bytes ${at}..${t.begin} belong to no tensor)`,
          );
        at = t.end;
      }
      if (at !== dataLen)
        throw fileError(
          file,
          `the tensors cover ${at} bytes of data but the data section has ${dataLen} (header length or ` +
            `file size is wrong)`,
        );
      return new SafetensorsFile(file, tensors, metadata, 8 + n);
    } finally {
      fs.closeSync(fd);
    }
  }

  has(name: string): boolean {
    return this.tensors.has(name);
  }

  info(name: string): TensorInfo {
    const t = this.tensors.get(name);
    if (!t) throw fileError(this.path, `no tensor named "${name}"`);
    return t;
  }

  /** Absolute byte offset and length of a tensor's data in the file. */
  location(name: string): { offset: number; length: number } {
    const t = this.info(name);
    return { offset: this.dataStart + t.begin, length: t.end - t.begin };
  }

  /** Raw bytes of one tensor, read from disk on demand. */
  readBytes(name: string): Uint8Array {
    const t = this.info(name);
    if (t.end - t.begin > MAX_TENSOR_BYTES)
      throw fileError(
        this.path,
        `tensor "${name}" has ${t.end - t.begin} bytes, more than one buffer can hold (${MAX_TENSOR_BYTES})`,
      );
    const buf = Buffer.alloc(t.end - t.begin);
    const fd = fs.openSync(this.path, "r");
    try {
      let off = 0;
      while (off < buf.length) {
        const got = fs.readSync(fd, buf, off, buf.length - off, this.dataStart + t.begin + off);
        if (got === 0) throw fileError(this.path, `truncated: tensor "${name}" is cut off`);
        off += got;
      }
    } finally {
      fs.closeSync(fd);
    }
    return buf;
  }

  /** One tensor decoded to float32. */
  readF32(name: string): Float32Array {
    return decodeToF32(this.readBytes(name), this.info(name).dtype);
  }
}

function parseEntry(file: string, name: string, v: unknown, dataLen: number): TensorInfo {
  const bad = (what: string) => fileError(file, `tensor "${name}": ${what}`);
  if (typeof v !== "object" || v === null) throw bad("header entry is not an object");
  const e = v as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
  if (typeof e.dtype !== "string") throw bad("missing dtype");
  if (!isDType(e.dtype)) throw bad(`unsupported dtype ${e.dtype} (supported: ${SUPPORTED_DTYPES.join(", ")})`);
  if (!Array.isArray(e.shape) || e.shape.some((d) => !Number.isInteger(d) || d < 0))
    throw bad("shape must be a list of non-negative integers");
  const offs = e.data_offsets;
  if (!Array.isArray(offs) || offs.length !== 2 || offs.some((d) => !Number.isInteger(d) || d < 0)) {
    throw bad("data_offsets must be [begin, end]");
  }
  const [begin, end] = offs as [number, number];
  if (end < begin) throw bad(`data_offsets [${begin}, ${end}] end before they begin`);
  if (end > dataLen) {
    throw bad(
      `data_offsets [${begin}, ${end}] are out of range: the data section has ${dataLen} bytes (file truncated?)`,
    );
  }
  const shape = e.shape as number[];
  const want = shape.reduce((a, b) => a * b, 1) * dtypeBytes(e.dtype);
  if (end - begin !== want)
    throw bad(`data_offsets span ${end - begin} bytes but ${e.dtype}${JSON.stringify(shape)} needs ${want}`);
  return { name, dtype: e.dtype, shape, begin, end };
}

/** Where a checkpoint keeps its text model's tensors: the prefix that stands for `model.`, and the output layer. */
export interface TextLayout {
  model: string;
  lmHead: string;
}

/** A causal LM's own names first; then Gemma 3's multimodal checkpoints (transformers < 4.52 and ≥ 4.52). */
export const TEXT_LAYOUTS: readonly TextLayout[] = [
  { model: "model.", lmHead: "lm_head.weight" },
  { model: "language_model.model.", lmHead: "language_model.lm_head.weight" },
  { model: "model.language_model.", lmHead: "lm_head.weight" },
];

/** A stored name's canonical (causal LM) name under `layout`, or null for a tensor outside the text model. */
export function canonicalName(stored: string, layout: TextLayout): string | null {
  const canonical = TEXT_LAYOUTS[0];
  if (stored === layout.lmHead) return canonical.lmHead;
  if (stored.startsWith(layout.model)) return `${canonical.model}${stored.slice(layout.model.length)}`;
  return null;
}

/** A checkpoint: one `model.safetensors` or shards listed by `model.safetensors.index.json`. */
export class Checkpoint {
  readonly files: SafetensorsFile[];
  private readonly where = new Map<string, SafetensorsFile>();
  /** where this checkpoint keeps the text model (TEXT_LAYOUTS); names are asked for in a causal LM's layout */
  layout: TextLayout = TEXT_LAYOUTS[0];

  private constructor(files: SafetensorsFile[]) {
    this.files = files;
    for (const f of files) for (const name of f.tensors.keys()) this.where.set(name, f);
  }

  /** Open the weights in a model folder (a multimodal one's text model under causal-LM names). */
  static openFolder(dir: string): Checkpoint {
    const ck = Checkpoint.openFiles(dir);
    ck.useTextLayout();
    return ck;
  }

  private static openFiles(dir: string): Checkpoint {
    const index = path.join(dir, "model.safetensors.index.json");
    const single = path.join(dir, "model.safetensors");
    if (fs.existsSync(index)) {
      const idx = readJsonFile<{ weight_map?: Record<string, string> }>(index);
      if (!idx || typeof idx.weight_map !== "object" || idx.weight_map === null) {
        throw fileError(index, "has no weight_map");
      }
      const shardNames = [...new Set(Object.values(idx.weight_map))];
      const files = shardNames.map((s) => {
        const p = path.join(dir, s);
        if (!fs.existsSync(p)) throw fileError(index, `lists shard "${s}", which does not exist`);
        return SafetensorsFile.open(p);
      });
      const ck = new Checkpoint(files);
      for (const [t, s] of Object.entries(idx.weight_map)) {
        const f = ck.where.get(t);
        if (!f || path.basename(f.path) !== s)
          throw fileError(path.join(dir, s), `does not contain tensor "${t}" listed in model.safetensors.index.json`);
      }
      return ck;
    }
    if (fs.existsSync(single)) return new Checkpoint([SafetensorsFile.open(single)]);
    throw fileError(dir, "no model.safetensors or model.safetensors.index.json");
  }

  /**
   * Read a multimodal checkpoint's text model under a causal LM's names (Gemma 3's
   * `language_model.model.layers.0…` as `model.layers.0…`): the layout whose embedding is there.
   */
  useTextLayout(): void {
    this.layout = TEXT_LAYOUTS.find((l) => this.where.has(`${l.model}embed_tokens.weight`)) ?? TEXT_LAYOUTS[0];
  }
  /** The name a tensor is (or would be, when missing) stored under, for its canonical name: canonicalName's inverse. */
  storedName(name: string): string {
    const canonical = TEXT_LAYOUTS[0];
    if (name === canonical.lmHead) return this.layout.lmHead;
    return name.startsWith(canonical.model) ? `${this.layout.model}${name.slice(canonical.model.length)}` : name;
  }

  names(): string[] {
    return [...this.where.keys()];
  }
  has(name: string): boolean {
    return this.where.has(this.storedName(name));
  }
  info(name: string): TensorInfo {
    return this.fileOf(name).info(this.storedName(name));
  }
  fileOf(name: string): SafetensorsFile {
    const f = this.where.get(this.storedName(name));
    if (!f) throw fileError(this.files[0]?.path ?? "checkpoint", `no tensor named "${this.storedName(name)}"`);
    return f;
  }
  readF32(name: string): Float32Array {
    return this.fileOf(name).readF32(this.storedName(name));
  }
  /** The storage dtype most bytes are in. */
  dominantDtype(): DType {
    const bytes = new Map<DType, number>();
    for (const f of this.files)
      for (const t of f.tensors.values()) bytes.set(t.dtype, (bytes.get(t.dtype) ?? 0) + t.end - t.begin);
    let best: DType = "F32";
    let most = -1;
    for (const [d, b] of bytes)
      if (b > most) {
        best = d;
        most = b;
      }
    return best;
  }
  parameterCount(): number {
    let n = 0;
    for (const f of this.files) for (const t of f.tensors.values()) n += t.shape.reduce((a, b) => a * b, 1);
    return n;
  }
}

export interface TensorToWrite {
  name: string;
  dtype: DType;
  shape: number[];
  /** float32 values (converted to `dtype`), or raw bytes already in `dtype` */
  data: Float32Array | Uint8Array | (() => Float32Array | Uint8Array);
}

/**
 * Write a safetensors file atomically. The header is padded with spaces to a multiple of 8
 * bytes so the data section is 8-byte aligned, as the format requires.
 * Data given as callbacks is produced one tensor at a time (for large checkpoints).
 */
export function writeSafetensors(file: string, tensors: TensorToWrite[], metadata?: Record<string, string>): void {
  const header: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length) header.__metadata__ = metadata;
  let off = 0;
  for (const t of tensors) {
    const n = t.shape.reduce((a, b) => a * b, 1) * dtypeBytes(t.dtype);
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [off, off + n] };
    off += n;
  }
  let json = JSON.stringify(header);
  const pad = (8 - (Buffer.byteLength(json) % 8)) % 8;
  json += " ".repeat(pad);
  const hbytes = Buffer.from(json, "utf8");
  const lenBuf = Buffer.alloc(8);
  lenBuf.writeBigUInt64LE(BigInt(hbytes.length));
  writeWithFdAtomic(file, (fd) => {
    fs.writeSync(fd, lenBuf);
    fs.writeSync(fd, hbytes);
    for (const t of tensors) {
      const d = typeof t.data === "function" ? t.data() : t.data;
      const bytes = d instanceof Float32Array ? encodeFromF32(d, t.dtype) : d;
      const want = t.shape.reduce((a, b) => a * b, 1) * dtypeBytes(t.dtype);
      if (bytes.byteLength !== want)
        throw new Error(`tensor ${t.name}: ${bytes.byteLength} bytes given, ${want} expected`);
      let w = 0;
      while (w < bytes.byteLength) w += fs.writeSync(fd, bytes, w, bytes.byteLength - w);
    }
  });
}
