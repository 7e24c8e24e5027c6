/** Small float64 vector helpers for the method's statistics. */

export function normalize(v: ArrayLike<number>): Float64Array {
  let s = 0;
  for (let i = 0; i < v.length; i++) s += v[i] * v[i];
  const n = Math.sqrt(s);
  const out = new Float64Array(v.length);
  for (let i = 0; i < v.length; i++) out[i] = v[i] / n;
  return out;
}

export function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

export function l2(a: ArrayLike<number>): number {
  return Math.sqrt(dot(a, a));
}

export function cosine(a: ArrayLike<number>, b: ArrayLike<number>): number {
  return dot(a, b) / (l2(a) * l2(b));
}

/** Lower median (torch.nanmedian on an even count), ignoring NaN; null when empty. */
export function lowerMedian(xs: number[]): number | null {
  const v = xs.filter((x) => !Number.isNaN(x)).sort((a, b) => a - b);
  if (v.length === 0) return null;
  return v[Math.floor((v.length - 1) / 2)];
}

/** KL(p_base ‖ p_int) of two logit rows with float64 softmax and the reference's 1e-6. */
export function klFromLogits(
  base: ArrayLike<number>,
  baseOff: number,
  int: ArrayLike<number>,
  intOff: number,
  V: number,
): number {
  const sm = (x: ArrayLike<number>, off: number) => {
    let m = -Infinity;
    for (let i = 0; i < V; i++) m = Math.max(m, x[off + i]);
    const p = new Float64Array(V);
    let z = 0;
    for (let i = 0; i < V; i++) z += p[i] = Math.exp(x[off + i] - m);
    for (let i = 0; i < V; i++) p[i] /= z;
    return p;
  };
  const p = sm(base, baseOff);
  const q = sm(int, intOff);
  let kl = 0;
  for (let i = 0; i < V; i++) kl += p[i] * (Math.log(p[i] + 1e-6) - Math.log(q[i] + 1e-6));
  return kl;
}

/** log P(S) − log(1 − P(S)) for a token set S from a logit row (float64 softmax, ε 1e-8). */
export function refusalLogOdds(logits: ArrayLike<number>, off: number, V: number, tokens: number[]): number {
  let m = -Infinity;
  for (let i = 0; i < V; i++) m = Math.max(m, logits[off + i]);
  let z = 0;
  for (let i = 0; i < V; i++) z += Math.exp(logits[off + i] - m);
  let s = 0;
  for (const t of tokens) s += Math.exp(logits[off + t] - m) / z;
  return Math.log(s + 1e-8) - Math.log(1 - s + 1e-8);
}
