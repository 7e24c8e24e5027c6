/**
 * `npm run fuzz [-- --cases N --seed S]`: the seeded mutation fuzzer over config.json,
 * tokenizer files, safetensors headers, prompt files and direction files (test/fuzz/).
 * Prints its counts (--show: a few of the error lines per target); exits 1 if any case failed.
 */
import path from "node:path";
import { FIXTURES } from "../test/helpers.js";
import { runFuzz } from "../test/fuzz/runner.js";

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(name);
  if (i < 0) return fallback;
  const v = Number(process.argv[i + 1]);
  if (!Number.isInteger(v) || v < 0) {
    process.stderr.write(`${name} must be a non-negative integer\n`);
    process.exit(2);
  }
  return v;
}

const cases = arg("--cases", 2000);
const seed = arg("--seed", 1);
const r = await runFuzz({
  seed,
  cases,
  base: path.join(FIXTURES, "llama"),
  width: 64,
  onCase: (d, t) => {
    if (d % 100 === 0 || d === t) process.stderr.write(`fuzz: ${d}/${t}\n`);
  },
});
process.stdout.write(
  `fuzz seed ${r.seed}: ${r.cases} cases, ${r.cleanErrors} clean errors (exit 2, one line), ${r.passes} ` +
    `passes (finite outputs), failures = ${r.failures.length}; ${r.seconds.toFixed(0)} s, peak worker RSS ` +
    `${r.peakRssMiB.toFixed(0)} MiB\n`,
);
if (process.argv.includes("--show"))
  for (const [t, lines] of Object.entries(r.samples))
    for (const l of lines) process.stdout.write(`  ${t}: cosmic: ${l}\n`);
for (const f of r.failures) process.stdout.write(`  case ${f.index} (${f.target}: ${f.mutation}): ${f.why}\n`);
process.exitCode = r.failures.length ? 1 : 0;
