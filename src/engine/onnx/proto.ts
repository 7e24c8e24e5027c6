/**
 * A minimal protobuf writer for the parts of onnx.proto cosmic emits (ModelProto, GraphProto,
 * NodeProto, AttributeProto, TensorProto, ValueInfoProto). Field numbers follow onnx.proto.
 * Large tensors go in as `raw_data` without being copied more than once.
 */

class Writer {
  private chunks: Uint8Array[] = [];
  private cur: number[] = [];
  length = 0;

  private flush(): void {
    if (this.cur.length) {
      this.chunks.push(Uint8Array.from(this.cur));
      this.cur = [];
    }
  }
  byte(b: number): void {
    this.cur.push(b);
    this.length++;
  }
  varint(v: number | bigint): void {
    let x = BigInt.asUintN(64, BigInt(v));
    while (x >= 0x80n) {
      this.byte(Number(x & 0x7fn) | 0x80);
      x >>= 7n;
    }
    this.byte(Number(x));
  }
  tag(field: number, wire: number): void {
    this.varint((field << 3) | wire);
  }
  bytes(field: number, data: Uint8Array): void {
    this.tag(field, 2);
    this.varint(data.byteLength);
    this.flush();
    this.chunks.push(data);
    this.length += data.byteLength;
  }
  message(field: number, w: Writer): void {
    this.tag(field, 2);
    this.varint(w.length);
    w.flush();
    this.flush();
    for (const c of w.chunks) this.chunks.push(c);
    this.length += w.length;
  }
  string(field: number, s: string): void {
    this.bytes(field, new TextEncoder().encode(s));
  }
  int(field: number, v: number | bigint): void {
    this.tag(field, 0);
    this.varint(v);
  }
  float(field: number, v: number): void {
    this.tag(field, 5);
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, v, true);
    for (const x of b) this.byte(x);
  }
  finish(): Uint8Array {
    this.flush();
    const out = new Uint8Array(this.length);
    let o = 0;
    for (const c of this.chunks) {
      out.set(c, o);
      o += c.byteLength;
    }
    return out;
  }
}

export const enum TensorType {
  FLOAT = 1,
  UINT8 = 2,
  INT32 = 6,
  INT64 = 7,
  BOOL = 9,
}

export interface TensorProto {
  name: string;
  dataType: TensorType;
  dims: number[];
  raw: Uint8Array;
}

export type AttrValue =
  | { kind: "int"; v: number }
  | { kind: "float"; v: number }
  | { kind: "ints"; v: number[] }
  | { kind: "floats"; v: number[] }
  | { kind: "string"; v: string }
  | { kind: "tensor"; v: TensorProto };

export interface NodeProto {
  opType: string;
  inputs: string[];
  outputs: string[];
  name: string;
  domain?: string;
  attrs: Record<string, AttrValue>;
}

export interface ValueInfo {
  name: string;
  elemType: TensorType;
  /** numbers are fixed sizes, strings symbolic dimension names */
  shape: (number | string)[];
}

export interface GraphProto {
  name: string;
  nodes: NodeProto[];
  initializers: TensorProto[];
  inputs: ValueInfo[];
  outputs: ValueInfo[];
}

function tensorMsg(t: TensorProto): Writer {
  const w = new Writer();
  for (const d of t.dims) w.int(1, d);
  w.int(2, t.dataType);
  w.string(8, t.name);
  w.bytes(9, t.raw);
  return w;
}

function attrMsg(name: string, a: AttrValue): Writer {
  const w = new Writer();
  w.string(1, name);
  switch (a.kind) {
    case "float":
      w.float(2, a.v);
      w.int(20, 1);
      break;
    case "int":
      w.int(3, a.v);
      w.int(20, 2);
      break;
    case "string":
      w.string(4, a.v);
      w.int(20, 3);
      break;
    case "tensor":
      w.message(5, tensorMsg(a.v));
      w.int(20, 4);
      break;
    case "floats":
      for (const f of a.v) w.float(7, f);
      w.int(20, 6);
      break;
    case "ints":
      for (const i of a.v) w.int(8, i);
      w.int(20, 7);
      break;
  }
  return w;
}

function valueInfoMsg(v: ValueInfo): Writer {
  const shape = new Writer();
  for (const d of v.shape) {
    const dim = new Writer();
    if (typeof d === "number") dim.int(1, d);
    else dim.string(2, d);
    shape.message(1, dim);
  }
  const tensorType = new Writer();
  tensorType.int(1, v.elemType);
  tensorType.message(2, shape);
  const type = new Writer();
  type.message(1, tensorType);
  const w = new Writer();
  w.string(1, v.name);
  w.message(2, type);
  return w;
}

/** Serialise a model (IR version 8, default-domain opset `opset`). */
export function encodeModel(g: GraphProto, opset: number, extraDomains: Record<string, number> = {}): Uint8Array {
  const graph = new Writer();
  for (const n of g.nodes) {
    const w = new Writer();
    for (const i of n.inputs) w.string(1, i);
    for (const o of n.outputs) w.string(2, o);
    w.string(3, n.name);
    w.string(4, n.opType);
    for (const [k, a] of Object.entries(n.attrs)) w.message(5, attrMsg(k, a));
    if (n.domain) w.string(7, n.domain);
    graph.message(1, w);
  }
  graph.string(2, g.name);
  for (const t of g.initializers) graph.message(5, tensorMsg(t));
  for (const v of g.inputs) graph.message(11, valueInfoMsg(v));
  for (const v of g.outputs) graph.message(12, valueInfoMsg(v));
  const model = new Writer();
  model.int(1, 8);
  model.string(2, "cosmic");
  model.message(7, graph);
  const opsets: [string, number][] = [["", opset], ...Object.entries(extraDomains)];
  for (const [domain, version] of opsets) {
    const o = new Writer();
    o.string(1, domain);
    o.int(2, version);
    model.message(8, o);
  }
  return model.finish();
}
