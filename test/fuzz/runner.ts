/**
 * The fuzzer's runner: writes each seeded case, hands it to a worker process and checks how it
 * ended. A case passes when it ran to finite outputs or stopped with one clean line; it fails on
 * a stack trace, a signal, a hang (> 30 s) or a peak RSS over 2 GiB.
 */
import { ChildProcess, fork } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { FuzzCase, makeCase } from "./cases.js";
import type { Outcome } from "./worker.js";
import { scratchDir } from "../helpers.js";

export interface FuzzFailure {
  index: number;
  target: string;
  mutation: string;
  why: string;
}
export interface FuzzReport {
  seed: number;
  cases: number;
  passes: number;
  cleanErrors: number;
  failures: FuzzFailure[];
  seconds: number;
  peakRssMiB: number;
  /** a few distinct clean-error lines per target, to read what users are told */
  samples: Record<string, string[]>;
}

const WORKER = path.join(path.dirname(fileURLToPath(import.meta.url)), "worker.js");
const HANG_MS = 30_000;
const RSS_LIMIT = 2 * 2 ** 30;
/** cases per worker process before a fresh one (a long-lived heap is not what the CLI sees) */
const RECYCLE = 150;

function peakRss(pid: number): number {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

function resetPeak(pid: number): void {
  try {
    fs.writeFileSync(`/proc/${pid}/clear_refs`, "5");
  } catch {
    /* not Linux, or not allowed: the peak is then cumulative */
  }
}

class Worker {
  proc: ChildProcess;
  used = 0;
  constructor() {
    this.proc = fork(WORKER, [], {
      env: { ...process.env, COSMIC_FUZZ_WORKER: "1" },
      stdio: ["ignore", "ignore", "ignore", "ipc"],
    });
  }
  run(c: FuzzCase): Promise<Outcome | { kind: "fatal"; why: string }> {
    this.used++;
    const p = this.proc;
    resetPeak(p.pid!);
    return new Promise((resolve) => {
      const done = (o: Outcome | { kind: "fatal"; why: string }) => {
        clearTimeout(timer);
        p.removeListener("message", onMessage);
        p.removeListener("exit", onExit);
        resolve(o);
      };
      const onMessage = (o: Outcome) => {
        const rss = peakRss(p.pid!);
        if (rss > RSS_LIMIT) done({ kind: "fatal", why: `peak RSS ${(rss / 2 ** 20).toFixed(0)} MiB` });
        else done(o);
      };
      const onExit = (code: number | null, signal: string | null) =>
        done({ kind: "fatal", why: signal ? `killed by ${signal}` : `exited with ${code}` });
      const timer = setTimeout(() => {
        p.kill("SIGKILL");
        done({ kind: "fatal", why: `hung for more than ${HANG_MS / 1000} s` });
      }, HANG_MS);
      p.on("message", onMessage);
      p.on("exit", onExit);
      p.send(c);
    });
  }
  stop(): void {
    this.proc.kill("SIGKILL");
  }
}

export async function runFuzz(o: {
  seed: number;
  cases: number;
  base: string;
  width: number;
  workers?: number;
  first?: number;
  onCase?: (done: number, total: number) => void;
}): Promise<FuzzReport> {
  const t0 = performance.now();
  const root = scratchDir("cosmic-fuzz-");
  const report: FuzzReport = {
    seed: o.seed,
    cases: 0,
    passes: 0,
    cleanErrors: 0,
    failures: [],
    seconds: 0,
    peakRssMiB: 0,
    samples: {},
  };
  let next = o.first ?? 0;
  const end = next + o.cases;
  const lane = async () => {
    let w = new Worker();
    try {
      while (next < end) {
        const i = next++;
        const c = makeCase(o.seed, i, root, o.base, o.width);
        if (w.used >= RECYCLE) {
          w.stop();
          w = new Worker();
        }
        const r = await w.run(c);
        report.peakRssMiB = Math.max(report.peakRssMiB, peakRss(w.proc.pid!) / 2 ** 20);
        report.cases++;
        if (r.kind === "pass") report.passes++;
        else if (r.kind === "error") {
          report.cleanErrors++;
          const seen = (report.samples[c.target] ??= []);
          const gist = r.line.replace(/\/tmp\/\S+?\/case-\d+\//g, "");
          if (seen.length < 6 && !seen.some((x) => x.slice(0, 40) === gist.slice(0, 40))) seen.push(gist);
        } else {
          report.failures.push({
            index: i,
            target: c.target,
            mutation: c.mutation,
            why: r.kind === "crash" ? `stack trace: ${r.detail}` : r.why,
          });
          if (r.kind === "fatal") {
            w.stop();
            w = new Worker();
          }
        }
        fs.rmSync(path.join(root, `case-${i}`), { recursive: true, force: true });
        o.onCase?.(report.cases, o.cases);
      }
    } finally {
      w.stop();
    }
  };
  await Promise.all(Array.from({ length: o.workers ?? Math.max(1, Math.min(4, os.cpus().length)) }, lane));
  fs.rmSync(root, { recursive: true, force: true });
  report.seconds = (performance.now() - t0) / 1000;
  return report;
}
