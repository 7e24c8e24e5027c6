/**
 * `cosmic report RUN_DIR`: one self-contained HTML file (inline SVG, inline CSS, no scripts or
 * network fetches) and the same plots as standalone SVG files, in RUN_DIR/report/.
 */
import fs from "node:fs";
import path from "node:path";
import { fileError } from "../errors.js";
import { writeFileAtomic } from "../formats/files.js";
import { CandidateRow, CandidateScore } from "../cosmic/select.js";
import { RunSummary } from "../cosmic/pipeline.js";
import { Evaluation, SetRates } from "../cosmic/evaluation.js";
import { barChart, heatmap, lineChart } from "./svg.js";
import { escapeXml, pct } from "../util/format.js";
import { isRunFolder } from "../formats/outputs.js";

const esc = escapeXml;

function readJson<T>(dir: string, rel: string): T | null {
  const p = path.join(dir, rel);
  if (!fs.existsSync(p)) return null;
  try {
    return JSON.parse(fs.readFileSync(p, "utf8")) as T;
  } catch {
    throw fileError(p, "is not valid JSON");
  }
}

interface EvalFile {
  completions: {
    prompt: string;
    response: string;
    is_refusal?: boolean;
    degenerate?: string | null;
    is_on_task?: boolean | null;
    is_success?: number;
    is_jailbreak_substring_matching: number;
  }[];
}

export interface ReportResult {
  html: string;
  svgs: string[];
}

type Plot = { name: string; svg: string; caption: string };

export function writeReport(runDir: string): ReportResult {
  const summary = readJson<RunSummary>(runDir, "summary.json");
  if (!summary) throw fileError(runDir, "has no summary.json: run `cosmic run --out " + runDir + "` first");
  // The report is written inside the run folder: only into one that cosmic made.
  if (!isRunFolder(runDir))
    throw fileError(runDir, "is not a cosmic run folder (no .cosmic-run inside): the report is only written into one");
  const plots: Plot[] = [...layerPlots(runDir), ...scorePlots(runDir, summary), ...ratePlots(summary)];
  const samples = sampleTables(runDir);
  const ev = summary.evaluation;
  const rates: Record<string, SetRates> | undefined = ev?.rates;
  const outDir = path.join(runDir, "report");
  fs.mkdirSync(outDir, { recursive: true });
  const svgs: string[] = [];
  for (const p of plots) {
    const f = path.join(outDir, `${p.name}.svg`);
    writeFileAtomic(f, `<?xml version="1.0" encoding="UTF-8"?>\n${p.svg}\n`);
    svgs.push(f);
  }
  const c = summary.cosmic;
  const html = `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>cosmic report — ${esc(path.basename(summary.model))}</title>
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">
<style>
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.5em}figure{margin:1.5em 0}figcaption{color:#555;font-size:.9em;max-width:760px}
table{border-collapse:collapse;font-size:.9em;margin:.5em 0}
td,th{border:1px solid #ccc;padding:4px 8px;vertical-align:top;text-align:left}
.grid{display:flex;flex-wrap:wrap;gap:1em}
svg.plot{max-width:100%;height:auto}
</style></head><body>
<h1>cosmic: refusal direction of ${esc(path.basename(summary.model))}</h1>
<p>${summary.layers} layers, ${summary.positions} EOI positions, ${summary.mode} interventions, seed ${summary.seed}.
Selected by ${summary.selection === "cosmic" ? "COSMIC" : "the substring baseline"}:
<b>position ${c.position}, layer ${c.layer}</b>
(refusal score ${c.refusal_score.toFixed(4)}, steering score ${c.steering_score.toFixed(4)},
KL score ${c.kl_div_score.toFixed(4)}).
L_low = [${summary.L_low.join(", ")}].
${editSizeText(summary)}
Scoring took ${(summary.scoring.flops / 1e9).toFixed(1)} GFLOP (wall-clock times: timings.json and stage_timings.json).</p>
${rates ? judgesTable(rates, ev!.strongest_judge.description) : "<p>No evaluation in this run.</p>"}
${summary.substring_note ? `<p><b>Substring baseline:</b> ${esc(summary.substring_note)}</p>` : ""}
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

/**
 * The selected direction's edit sizes (absent in summaries written before they were measured):
 * how far its ablation and addition move the residual stream where they act.
 */
function editSizeText(summary: RunSummary): string {
  const e = summary.cosmic.edit_size as RunSummary["cosmic"]["edit_size"] | undefined;
  if (!e) return "";
  return (
    `At layer ${e.layer}'s input the ablation moves the residual stream by ${pct(e.ablation.other)} of its norm at ` +
    `the prompts' other positions and ${pct(e.ablation.eoi)} at the EOI positions; the addition by ` +
    `${pct(e.addition.other)} and ${pct(e.addition.eoi)} (mean ‖Δx‖/‖x‖ over ${e.prompts} harmless validation ` +
    `prompts; edits near or above 100 % move every token off its own distribution, and the text breaks).`
  );
}

/** L_low: the per-layer similarity the layers were ranked by. */
function layerPlots(runDir: string): Plot[] {
  const plots: Plot[] = [];
  const layers = readJson<{ ranked_layers: number[]; cosine_similarity: number[] }>(
    runDir,
    "select_direction/COSMIC_evaluation_layers.json",
  );
  if (layers) {
    plots.push({
      name: "layer-similarity",
      caption:
        "Cosine similarity of the mean last-token outputs of harmful and harmless train prompts, per layer; " +
        "the shaded layers are L_low, where COSMIC's scores are read.",
      svg: lineChart({
        id: "layer-similarity",
        title: "harmful vs harmless similarity per layer",
        xLabel: "layer",
        yLabel: "cosine similarity",
        series: [{ name: "cos(μ+, μ−)", color: "#1f77b4", points: layers.cosine_similarity.map((v, l) => [l, v]) }],
        marks: layers.ranked_layers,
        markLabel: "L_low",
      }),
    });
  }
  return plots;
}

/** A heatmap of every candidate's scores per method and score. */
function scorePlots(runDir: string, summary: RunSummary): Plot[] {
  const plots: Plot[] = [];
  const heat = (method: "cosmic" | "substring", sub: string) => {
    const all = readJson<CandidateRow[]>(runDir, `${sub}/direction_evaluations.json`);
    const kept = readJson<CandidateScore[]>(runDir, `${sub}/direction_evaluations_filtered.json`) ?? [];
    if (!all) return;
    const keep = new Set(kept.map((s) => `${s.position}:${s.layer}`));
    const rows = [...new Set(all.map((s) => s.position))].sort((a, b) => a - b);
    const cols = [...new Set(all.map((s) => s.layer))].sort((a, b) => a - b);
    const at = new Map(all.map((s) => [`${s.position}:${s.layer}`, s]));
    const sel = method === "cosmic" ? summary.cosmic : summary.substring;
    // Which way is better for each score: COSMIC maximises refusal + steering and filters high KL;
    // the substring baseline wants a low bypass score and a positive induce score.
    const names: ["refusal_score" | "steering_score" | "kl_div_score", string, "higher" | "lower"][] =
      method === "cosmic"
        ? [
            ["refusal_score", "refusal score", "higher"],
            ["steering_score", "steering score", "higher"],
            ["kl_div_score", "KL score", "lower"],
          ]
        : [
            ["refusal_score", "bypass score (substring)", "lower"],
            ["steering_score", "induce score (substring)", "higher"],
          ];
    for (const [field, label, better] of names) {
      const id = `${method}-${String(field).replace(/_/g, "-")}`;
      plots.push({
        name: id,
        caption:
          `${label} of every candidate direction (EOI position × layer); ${better} is better. Crossed ` +
          `cells were filtered out; the circle marks the selected direction.` +
          (summary.scoring.schedule === "lazy"
            ? " Grey cells were not scored: the lazy schedule computes only the scores the selection reads."
            : ""),
        svg: heatmap({
          id,
          title: `${method === "cosmic" ? "COSMIC " : ""}${label}`,
          rows,
          cols,
          rowLabel: "EOI position",
          colLabel: "layer",
          // A cell with no candidate is NaN; a candidate's null score was not computed (lazy schedule).
          value: (r, c) => {
            const s = at.get(`${r}:${c}`);
            return s ? (s[field] ?? null) : NaN;
          },
          missing: summary.scoring.schedule === "lazy" ? "not scored (lazy)" : undefined,
          filtered: (r, c) => !keep.has(`${r}:${c}`),
          selected: sel ? [sel.position, sel.layer] : null,
          better,
        }),
      });
    }
  };
  heat("cosmic", "select_direction");
  if (summary.substring) heat("substring", "select_direction_substring");
  return plots;
}

/** Attack success, answers and refusals under the selected directions, against the baseline. */
function ratesPlot(ev: Evaluation, rates: Record<string, SetRates>): Plot {
  const series = [
    {
      name: "baseline",
      color: "#9e9e9e",
      values: [
        rates.harmful_baseline?.attack_success_rate ?? null,
        rates.harmless_baseline?.success_rate ?? null,
        rates.harmless_baseline?.refusal_rate ?? null,
      ],
    },
    {
      name: "COSMIC direction",
      color: "#e4572e",
      values: [
        rates.harmful_ablation?.attack_success_rate ?? null,
        rates.harmless_ablation?.success_rate ?? null,
        rates.harmless_actadd?.refusal_rate ?? null,
      ],
    },
  ];
  if (rates.substring_harmful_ablation)
    series.push({
      name: "substring direction",
      color: "#29a39b",
      values: [
        rates.substring_harmful_ablation.attack_success_rate ?? null,
        rates.substring_harmless_ablation?.success_rate ?? null,
        rates.substring_harmless_actadd?.refusal_rate ?? null,
      ],
    });
  return {
    name: "rates",
    caption:
      `Attack success on harmful test prompts under ablation and answers on harmless ones under the ` +
      `same ablation (both by the strongest judge: ${ev.strongest_judge.description}), and refusal ` +
      `(substring judge) of harmless prompts under addition, against the unmodified model.`,
    svg: barChart({
      id: "rates",
      title: "steering with the selected direction (%)",
      groups: ["attack success (harmful, ablation)", "answered (harmless, ablation)", "refused (harmless, addition)"],
      series,
      yLabel: "% of prompts",
    }),
  };
}

/** Refusal rate against the addition coefficient α (steering toward refusal), when swept. */
function alphaSweepPlot(rates: Record<string, SetRates>): Plot | null {
  const prefix = "harmful_actadd_alpha";
  const alphas = Object.keys(rates)
    .filter((k) => k.startsWith(prefix))
    .map((k) => Number(k.slice(prefix.length)))
    .sort((a, b) => a - b);
  if (!alphas.length) return null;
  const curve = (set: "harmful" | "harmless"): [number, number][] => [
    [0, 100 * (rates[`${set}_baseline`]?.refusal_rate ?? 0)],
    ...alphas.map((a) => [a, 100 * rates[`${set}_actadd_alpha${a}`].refusal_rate] as [number, number]),
  ];
  return {
    name: "alpha-sweep",
    caption: "Refusal rate (%) against the addition coefficient α (steering toward refusal).",
    svg: lineChart({
      id: "alpha-sweep",
      title: "refusal rate vs α (%)",
      xLabel: "α",
      yLabel: "% refused",
      yMin: 0,
      yMax: 100,
      series: [
        { name: "harmful", color: "#e4572e", points: curve("harmful") },
        { name: "harmless", color: "#1f77b4", points: curve("harmless") },
      ],
    }),
  };
}

/** The evaluation's rates against the baseline, and the α sweep. */
function ratePlots(summary: RunSummary): Plot[] {
  const ev = summary.evaluation;
  const rates: Record<string, SetRates> | undefined = ev?.rates;
  if (!ev || !rates) return [];
  const sweep = alphaSweepPlot(rates);
  return [ratesPlot(ev, rates), ...(sweep ? [sweep] : [])];
}

/** Before/after completions, examples of each verdict the judges gave. */
function sampleTables(runDir: string): string[] {
  const samples: string[] = [];
  const verdictOf = (c: EvalFile["completions"][number]) =>
    c.degenerate
      ? `degenerate (${c.degenerate})`
      : c.is_refusal
        ? "refusal"
        : c.is_on_task
          ? "on task"
          : c.is_on_task === false
            ? "off task"
            : "answer";
  const row = (...cells: string[]) => `<tr>${cells.map((c) => `<td>${esc(c)}</td>`).join("")}</tr>`;
  // Examples chosen to show each verdict the judges gave, not just the first rows.
  const pair = (a: string, b: string, title: string, perVerdict: number) => {
    const x = readJson<EvalFile>(runDir, `completions/${a}_evaluations.json`);
    const y = readJson<EvalFile>(runDir, `completions/${b}_evaluations.json`);
    if (!x || !y) return;
    const byVerdict = new Map<string, number[]>();
    y.completions.forEach((c, i) => {
      const v = verdictOf(c);
      const list = byVerdict.get(v) ?? [];
      if (list.length < perVerdict) list.push(i);
      byVerdict.set(v, list);
    });
    samples.push(
      `<h3>${esc(title)}</h3><table><tr><th>prompt</th><th>before</th><th>after</th><th>verdict after (of ` +
        `${y.completions.length})</th></tr>`,
    );
    for (const [v, idx] of byVerdict) {
      const count = y.completions.filter((c) => verdictOf(c) === v).length;
      for (const i of idx) {
        samples.push(
          row(x.completions[i].prompt, x.completions[i].response, y.completions[i].response, `${v} (${count})`),
        );
      }
    }
    samples.push("</table>");
  };
  pair("harmful_baseline", "harmful_ablation", "Harmful prompts: baseline → ablation of the direction", 3);
  pair(
    "harmless_baseline",
    "harmless_ablation",
    "Harmless prompts: baseline → ablation of the direction (capability kept?)",
    2,
  );
  pair("harmless_baseline", "harmless_actadd", "Harmless prompts: baseline → addition of the direction", 3);

  return samples;
}

/** Every judge's rate per (prompt set, intervention), the strongest judge first. */
function judgesTable(rates: Record<string, SetRates>, judge: string): string {
  const rows = Object.values(rates).map((r) => {
    const loss = r.loss_own_completions
      ? `${r.loss_own_completions.baseline.ce.toFixed(3)} → ` +
        `${r.loss_own_completions.intervention.ce.toFixed(3)} ` +
        `(${(100 * r.loss_own_completions.relative_increase).toFixed(1)} %)`
      : "";
    const strongest = `<b>${r.set === "harmful" ? "attack success" : "answered"} ${pct(r.success_rate)}</b>`;
    return (
      `<tr><td>${r.set}</td><td>${esc(r.intervention)}</td><td>${r.count}</td><td>${strongest}</td>` +
      `<td>${r.set === "harmful" ? pct(r.attack_success_substring) : ""}</td><td>${pct(r.refusal_rate)}</td>` +
      `<td>${pct(r.degenerate_rate)}</td><td>${pct(r.on_task_rate)}</td><td>${pct(r.guard_unsafe_rate)}</td>` +
      `<td>${loss}</td></tr>`
    );
  });
  const head = ["prompts", "intervention", "n", "strongest judge", "substring ASR", "refused", "degenerate", "on task"]
    .concat(["guard unsafe", "CE on own harmless completions"])
    .map((h) => `<th>${h}</th>`)
    .join("");
  return `<p>Strongest judge: <b>${esc(judge)}</b>. The substring column is the paper's (a reply with no refusal
phrase counts as an attack success).</p>
<table><tr>${head}</tr>
${rows.join("\n")}
</table>`;
}
