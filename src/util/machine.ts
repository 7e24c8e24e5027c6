/**
 * The machine a time was measured on, in one line: a duration means little without it, and
 * `os.cpus()` names only "AMD EPYC" for CPUs of very different speed (on two of this project's
 * 2-core machines a dry run's calibration on the Qwen3-0.6B shape read 106 and 290 GFLOP/s).
 */
import fs from "node:fs";
import os from "node:os";

/** The fields of /proc/cpuinfo that tell CPU generations apart, from its first processor. */
export function parseCpuinfo(text: string): {
  model: string | null;
  family: string | null;
  modelNumber: string | null;
  flags: Set<string>;
} {
  const first = text.split(/\n\s*\n/)[0] ?? "";
  const field = (name: string): string | null => {
    const m = new RegExp(`^${name}\\s*:\\s*(.*)$`, "m").exec(first);
    return m ? m[1].trim() : null;
  };
  return {
    model: field("model name"),
    family: field("cpu family"),
    modelNumber: field("model"),
    flags: new Set((field("flags") ?? "").split(/\s+/).filter(Boolean)),
  };
}

/** e.g. "AMD EPYC (family 26, model 2; AVX-512), 2 CPUs, 23.4 GiB". */
export function describeMachine(cpuinfo: string | null = readCpuinfo()): string {
  const cpus = os.cpus();
  const info = cpuinfo ? parseCpuinfo(cpuinfo) : null;
  const name = info?.model ?? cpus[0]?.model ?? os.arch();
  const details: string[] = [];
  if (info?.family) details.push(`family ${info.family}`);
  if (info?.modelNumber) details.push(`model ${info.modelNumber}`);
  const simd = info?.flags.has("avx512f") ? "AVX-512" : info?.flags.has("avx2") ? "AVX2" : null;
  const inner = [details.join(", "), simd].filter(Boolean).join("; ");
  const memory = `${(os.totalmem() / 2 ** 30).toFixed(1)} GiB`;
  return `${name}${inner ? ` (${inner})` : ""}, ${cpus.length} CPUs, ${memory}`;
}

function readCpuinfo(): string | null {
  try {
    return fs.readFileSync("/proc/cpuinfo", "utf8");
  } catch {
    return null; // not Linux
  }
}
