/**
 * A small, typed ONNX graph builder: values are names, every op call returns its output
 * name(s). Weights become initializers so onnxruntime can prepack them.
 */
import { AttrValue, encodeModel, GraphProto, NodeProto, TensorProto, TensorType, ValueInfo } from "./proto.js";

export const OPSET = 17;

type Attrs = Record<string, number | number[] | string | { floats: number[] } | { float: number }>;

function toAttr(v: Attrs[string]): AttrValue {
  if (typeof v === "string") return { kind: "string", v };
  if (Array.isArray(v)) return { kind: "ints", v };
  if (typeof v === "number") return { kind: "int", v };
  if ("floats" in v) return { kind: "floats", v: v.floats };
  return { kind: "float", v: v.float };
}

export class GraphBuilder {
  private nodes: NodeProto[] = [];
  private inits: TensorProto[] = [];
  private inputs: ValueInfo[] = [];
  private outputs: ValueInfo[] = [];
  private counter = 0;
  private constCache = new Map<string, string>();
  /** operator domains other than the default one that nodes use, with their opset versions */
  private domains: Record<string, number> = {};
  constructor(readonly name: string) {}

  private fresh(prefix: string): string {
    return `${prefix}_${this.counter++}`;
  }

  input(name: string, shape: (number | string)[], elemType: TensorType = TensorType.FLOAT): string {
    this.inputs.push({ name, elemType, shape });
    return name;
  }

  /** Mark `value` as a graph output named `name` (an Identity keeps names stable). */
  output(value: string, name: string, shape: (number | string)[], elemType: TensorType = TensorType.FLOAT): void {
    if (value !== name) this.op("Identity", [value], {}, name);
    this.outputs.push({ name, elemType, shape });
  }

  weight(name: string, data: Float32Array, dims: number[]): string {
    this.inits.push({
      name,
      dataType: TensorType.FLOAT,
      dims,
      raw: new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
    });
    return name;
  }

  /** A uint8 initializer (quantised weight codes and zero points). */
  uint8(name: string, data: Uint8Array, dims: number[]): string {
    this.inits.push({ name, dataType: TensorType.UINT8, dims, raw: data });
    return name;
  }

  /** A float32 constant (scalars cached by value). */
  f32(values: number[] | number, dims?: number[]): string {
    const arr = typeof values === "number" ? [values] : values;
    const d = dims ?? (typeof values === "number" ? [] : [arr.length]);
    const key = `f:${d}:${arr}`;
    const hit = this.constCache.get(key);
    if (hit) return hit;
    const name = this.fresh("cf");
    this.weight(name, Float32Array.from(arr), d);
    this.constCache.set(key, name);
    return name;
  }

  i64(values: number[], dims?: number[]): string {
    const key = `i:${dims ?? values.length}:${values}`;
    const hit = this.constCache.get(key);
    if (hit) return hit;
    const name = this.fresh("ci");
    const raw = new Uint8Array(new BigInt64Array(values.map((v) => BigInt(v))).buffer);
    this.inits.push({ name, dataType: TensorType.INT64, dims: dims ?? [values.length], raw });
    this.constCache.set(key, name);
    return name;
  }

  op(type: string, inputs: string[], attrs: Attrs = {}, outName?: string): string {
    return this.opN(type, inputs, 1, attrs, outName ? [outName] : undefined)[0];
  }

  opN(type: string, inputs: string[], nOut: number, attrs: Attrs = {}, outNames?: string[]): string[] {
    const outs = outNames ?? Array.from({ length: nOut }, () => this.fresh(type.toLowerCase()));
    const a: Record<string, AttrValue> = {};
    for (const [k, v] of Object.entries(attrs)) a[k] = toAttr(v);
    this.nodes.push({ opType: type, inputs, outputs: outs, name: this.fresh(`n_${type}`), attrs: a });
    return outs;
  }

  /** An onnxruntime contrib operator (domain com.microsoft, opset 1), e.g. MatMulNBits. */
  contribOp(type: string, inputs: string[], attrs: Attrs = {}): string {
    const out = this.op(type, inputs, attrs);
    this.nodes[this.nodes.length - 1].domain = "com.microsoft";
    this.domains["com.microsoft"] = 1;
    return out;
  }

  // Convenience wrappers for the ops the transformer graphs use.
  add(a: string, b: string): string {
    return this.op("Add", [a, b]);
  }
  sub(a: string, b: string): string {
    return this.op("Sub", [a, b]);
  }
  mul(a: string, b: string): string {
    return this.op("Mul", [a, b]);
  }
  div(a: string, b: string): string {
    return this.op("Div", [a, b]);
  }
  matmul(a: string, b: string): string {
    return this.op("MatMul", [a, b]);
  }
  reshape(x: string, shape: number[]): string {
    return this.op("Reshape", [x, this.i64(shape)]);
  }
  transpose(x: string, perm: number[]): string {
    return this.op("Transpose", [x], { perm });
  }
  concat(xs: string[], axis: number): string {
    return this.op("Concat", xs, { axis });
  }
  unsqueeze(x: string, axes: number[]): string {
    return this.op("Unsqueeze", [x, this.i64(axes)]);
  }
  reduceSumLast(x: string): string {
    return this.op("ReduceSum", [x, this.i64([-1])], { keepdims: 1 });
  }
  slice(x: string, starts: number[], ends: number[], axes: number[]): string {
    return this.op("Slice", [x, this.i64(starts), this.i64(ends), this.i64(axes)]);
  }
  split(x: string, sizes: number[], axis: number): string[] {
    return this.opN("Split", [x, this.i64(sizes)], sizes.length, { axis });
  }

  build(): GraphProto {
    return { name: this.name, nodes: this.nodes, initializers: this.inits, inputs: this.inputs, outputs: this.outputs };
  }

  encode(): Uint8Array {
    return encodeModel(this.build(), OPSET, this.domains);
  }
}
