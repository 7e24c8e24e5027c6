// Where a run's direction sits in the prompts: the projection x·r̂ of the block input at the
// selected layer, per position counted from the end (mean ± std over test prompts, positions
// every prompt has), for the harmful and harmless test sets, beside ACE's reference μ-·r̂
// (the value ACE's ablation gives every position).
// Usage: node tools/organism-seeds/projections.mjs RUN_DIR MODEL_DIR [N_PROMPTS=100]
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
const L = await import(path.join(root, "dist/src/index.js"));
const [run, model, nArg = "100"] = process.argv.slice(2);
if (!run || !model) {
  console.error("usage: node tools/organism-seeds/projections.mjs RUN_DIR MODEL_DIR [N_PROMPTS]");
  process.exit(2);
}
const folder = L.ModelFolder.open(model);
const engine = await L.Engine.load(folder);
const dir = L.readDirection(path.join(run, "direction.safetensors"));
const layer = Number(dir.metadata.layer);
const u = L.unit(dir.direction);
const dot = (a, off) => u.reduce((s, v, i) => s + v * a[off + i], 0);
const line = { layer, position: Number(dir.metadata.position), mode: dir.metadata.mode };
if (dir.reference) line.ace_reference = +dot(dir.reference, 0).toFixed(2);
const prompts = JSON.parse(fs.readFileSync(path.join(run, "prompts.json"), "utf8"));
for (const set of ["harmful", "harmless"]) {
  const ids = prompts[`${set}_test`]
    .slice(0, Number(nArg))
    .map((p) => folder.tokenizer.encode(folder.tokenizer.formatPrompt(p.instruction)));
  const N = Math.min(...ids.map((x) => x.length));
  const cap = await L.capture(engine, ids, { residPrePositions: N });
  const cells = [];
  for (let j = 0; j < N; j++) {
    const xs = ids.map((_, i) => dot(cap.residPre, ((i * cap.layers + layer) * N + j) * cap.width));
    const m = xs.reduce((a, b) => a + b, 0) / xs.length;
    const s = Math.sqrt(xs.reduce((a, b) => a + (b - m) ** 2, 0) / xs.length);
    cells.push(`${j - N}: ${m.toFixed(2)} ± ${s.toFixed(2)}`);
  }
  line[set] = cells.join(", ");
}
console.log(JSON.stringify(line, null, 1));
await engine.release();
