/**
 * `cosmic report RUN_DIR`: one self-contained HTML file (inline SVG, inline CSS, no scripts or
 * network fetches) and the same plots as standalone SVG files, in RUN_DIR/report/.
 */
import fs from "node:fs";
import path from "node:path";
import { fileError } from "../errors.js";
import { writeFileAtomic } from "../formats/files.js";
import { CandidateScore } from "../cosmic/select.js";
import { RunSummary, RateSummary } from "../cosmic/pipeline.js";
import { barChart, heatmap, lineChart } from "./svg.js";

const esc = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");

function readJson<T>(dir: string, rel: string): T | null {
  const p = path.join(dir, rel);
  if (!fs.existsSync(p)) return null;
  try {
    return JSON.parse(fs.readFileSync(p, "utf8")) as T;
  } catch {
    throw fileError(p, "is not valid JSON");
  }
}

interface EvalFile { completions: { prompt: string; response: string; is_jailbreak_substring_matching: number }[] }

export interface ReportResult {
  html: string;
  svgs: string[];
}

export function writeReport(runDir: string): ReportResult {
  const summary = readJson<RunSummary>(runDir, "summary.json");
  if (!summary) throw fileError(runDir, "has no summary.json: run `cosmic run --out " + runDir + "` first");
  const layers = readJson<{ ranked_layers: number[]; cosine_similarity: number[] }>(runDir, "select_direction/COSMIC_evaluation_layers.json");
  const plots: { name: string; svg: string; caption: string }[] = [];
  if (layers) {
    plots.push({
      name: "layer-similarity",
      caption: "Cosine similarity of the mean last-token outputs of harmful and harmless train prompts, per layer; the shaded layers are L_low, where COSMIC's scores are read.",
      svg: lineChart({ id: "layer-similarity", title: "harmful vs harmless similarity per layer", xLabel: "layer", yLabel: "cosine similarity", series: [{ name: "cos(μ+, μ−)", color: "#1f77b4", points: layers.cosine_similarity.map((v, l) => [l, v]) }], marks: layers.ranked_layers, markLabel: "L_low" }),
    });
  }
  const heat = (method: "cosmic" | "substring", sub: string) => {
    const all = readJson<CandidateScore[]>(runDir, `${sub}/direction_evaluations.json`);
    const kept = readJson<CandidateScore[]>(runDir, `${sub}/direction_evaluations_filtered.json`) ?? [];
    if (!all) return;
    const keep = new Set(kept.map((s) => `${s.position}:${s.layer}`));
    const rows = [...new Set(all.map((s) => s.position))].sort((a, b) => a - b);
    const cols = [...new Set(all.map((s) => s.layer))].sort((a, b) => a - b);
    const at = new Map(all.map((s) => [`${s.position}:${s.layer}`, s]));
    const sel = method === "cosmic" ? summary.cosmic : summary.substring;
    const names: [keyof CandidateScore, string][] = method === "cosmic"
      ? [["refusal_score", "refusal score"], ["steering_score", "steering score"], ["kl_div_score", "KL score"]]
      : [["refusal_score", "bypass score (substring)"], ["steering_score", "induce score (substring)"]];
    for (const [field, label] of names) {
      const id = `${method}-${String(field).replace(/_/g, "-")}`;
      plots.push({
        name: id,
        caption: `${label} of every candidate direction (EOI position × layer). Crossed cells were filtered out; the circle marks the selected direction.`,
        svg: heatmap({ id, title: `${method === "cosmic" ? "COSMIC " : ""}${label}`, rows, cols, rowLabel: "EOI position", colLabel: "layer", value: (r, c) => at.get(`${r}:${c}`)?.[field] as number ?? NaN, filtered: (r, c) => !keep.has(`${r}:${c}`), selected: sel ? [sel.position, sel.layer] : null }),
      });
    }
  };
  heat("cosmic", "select_direction");
  if (summary.substring) heat("substring", "select_direction_substring");
  const ev = summary.evaluation as { rates?: Record<string, RateSummary> } | undefined;
  const rates = ev?.rates;
  if (rates) {
    const series = [
      { name: "baseline", color: "#9e9e9e", values: [rates.harmful_baseline?.attack_success_rate ?? null, rates.harmless_baseline?.refusal_rate ?? null] },
      { name: "COSMIC direction", color: "#e4572e", values: [rates.harmful_ablation?.attack_success_rate ?? null, rates.harmless_actadd?.refusal_rate ?? null] },
    ];
    if (rates.substring_harmful_ablation) series.push({ name: "substring direction", color: "#29a39b", values: [rates.substring_harmful_ablation.attack_success_rate ?? null, rates.substring_harmless_actadd?.refusal_rate ?? null] });
    plots.push({
      name: "rates",
      caption: "Attack success on harmful test prompts (ablation of the direction) and refusal rate on harmless test prompts (addition of the direction), against the unmodified model.",
      svg: barChart({ id: "rates", title: "steering with the selected direction", groups: ["attack success (harmful, ablation)", "refusal (harmless, addition)"], series, yLabel: "share of prompts" }),
    });
    const alphas = Object.keys(rates).filter((k) => k.startsWith("harmful_actadd_alpha")).map((k) => Number(k.slice("harmful_actadd_alpha".length))).sort((a, b) => a - b);
    if (alphas.length) {
      plots.push({
        name: "alpha-sweep",
        caption: "Refusal rate against the addition coefficient α (steering toward refusal).",
        svg: lineChart({ id: "alpha-sweep", title: "refusal rate vs α", xLabel: "α", yLabel: "refusal rate", yMin: 0, yMax: 1, series: [
          { name: "harmful", color: "#e4572e", points: [[0, rates.harmful_baseline?.refusal_rate ?? 0], ...alphas.map((a) => [a, rates[`harmful_actadd_alpha${a}`].refusal_rate] as [number, number])] },
          { name: "harmless", color: "#1f77b4", points: [[0, rates.harmless_baseline?.refusal_rate ?? 0], ...alphas.map((a) => [a, rates[`harmless_actadd_alpha${a}`].refusal_rate] as [number, number])] },
        ] }),
      });
    }
  }
  // Sample completions before and after.
  const samples: string[] = [];
  const pair = (a: string, b: string, title: string, n: number) => {
    const x = readJson<EvalFile>(runDir, `completions/${a}_evaluations.json`);
    const y = readJson<EvalFile>(runDir, `completions/${b}_evaluations.json`);
    if (!x || !y) return;
    samples.push(`<h3>${esc(title)}</h3><table><tr><th>prompt</th><th>before</th><th>after</th></tr>`);
    for (let i = 0; i < Math.min(n, x.completions.length); i++) {
      samples.push(`<tr><td>${esc(x.completions[i].prompt)}</td><td>${esc(x.completions[i].response)}</td><td>${esc(y.completions[i].response)}</td></tr>`);
    }
    samples.push("</table>");
  };
  pair("harmful_baseline", "harmful_ablation", "Harmful prompts: baseline → ablation of the direction", 6);
  pair("harmless_baseline", "harmless_actadd", "Harmless prompts: baseline → addition of the direction", 6);

  const outDir = path.join(runDir, "report");
  fs.mkdirSync(outDir, { recursive: true });
  const svgs: string[] = [];
  for (const p of plots) {
    const f = path.join(outDir, `${p.name}.svg`);
    writeFileAtomic(f, `<?xml version="1.0" encoding="UTF-8"?>\n${p.svg}\n`);
    svgs.push(f);
  }
  const pct = (x: number | undefined) => (x === undefined ? "—" : `${(100 * x).toFixed(1)} %`);
  const c = summary.cosmic;
  const html = `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>cosmic report — ${esc(path.basename(summary.model))}</title>
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">
<style>
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.5em}figure{margin:1.5em 0}figcaption{color:#555;font-size:.9em;max-width:760px}
table{border-collapse:collapse;font-size:.9em;margin:.5em 0}td,th{border:1px solid #ccc;padding:4px 8px;vertical-align:top;text-align:left}
.grid{display:flex;flex-wrap:wrap;gap:1em}
</style></head><body>
<h1>cosmic: refusal direction of ${esc(summary.model)}</h1>
<p>${summary.layers} layers, ${summary.positions} EOI positions, ${summary.mode} interventions, seed ${summary.seed}.
Selected by ${summary.selection === "cosmic" ? "COSMIC" : "the substring baseline"}: <b>position ${c.position}, layer ${c.layer}</b>
(refusal score ${c.refusal_score.toFixed(4)}, steering score ${c.steering_score.toFixed(4)}, KL score ${c.kl_div_score.toFixed(4)}).
L_low = [${summary.L_low.join(", ")}]. Scoring took ${summary.scoring.seconds.toFixed(1)} s and ${(summary.scoring.flops / 1e9).toFixed(1)} GFLOP.</p>
${rates ? `<table><tr><th></th><th>attack success (harmful)</th><th>refusal (harmless)</th></tr>
<tr><td>baseline</td><td>${pct(rates.harmful_baseline?.attack_success_rate)}</td><td>${pct(rates.harmless_baseline?.refusal_rate)}</td></tr>
<tr><td>COSMIC direction</td><td>${pct(rates.harmful_ablation?.attack_success_rate)}</td><td>${pct(rates.harmless_actadd?.refusal_rate)}</td></tr>
${rates.substring_harmful_ablation ? `<tr><td>substring direction</td><td>${pct(rates.substring_harmful_ablation.attack_success_rate)}</td><td>${pct(rates.substring_harmless_actadd?.refusal_rate)}</td></tr>` : ""}
</table>` : "<p>No evaluation in this run.</p>"}
<div class="grid">
${plots.map((p) => `<figure>${p.svg}<figcaption>${esc(p.caption)}</figcaption></figure>`).join("\n")}
</div>
${samples.join("\n")}
</body></html>
`;
  const htmlFile = path.join(outDir, "report.html");
  writeFileAtomic(htmlFile, html);
  return { html: htmlFile, svgs };
}
