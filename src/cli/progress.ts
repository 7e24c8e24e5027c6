/** Progress bars on stderr (only on a terminal, and never with --quiet or --json progress). */
import cliProgress from "cli-progress";

export interface Progress {
  update(done: number, total?: number): void;
  stop(): void;
}

export type ProgressMode = "bar" | "quiet" | "json";

export function progressBar(label: string, total: number, mode: ProgressMode = "bar"): Progress {
  if (mode === "json") {
    let lastT = 0;
    return {
      update(done, t) {
        const now = Date.now();
        if (done < (t ?? total) && now - lastT < 500) return;
        lastT = now;
        process.stderr.write(JSON.stringify({ stage: label, done, total: t ?? total }) + "\n");
      },
      stop() {},
    };
  }
  if (mode === "quiet" || !process.stderr.isTTY) return { update() {}, stop() {} };
  const bar = new cliProgress.SingleBar(
    {
      format: `${label.padEnd(22)} [{bar}] {value}/{total} | {percentage}% | ETA {eta_formatted}`,
      stream: process.stderr,
      hideCursor: true,
      clearOnComplete: false,
    },
    cliProgress.Presets.shades_classic,
  );
  bar.start(total, 0);
  return {
    update(done, t) {
      if (t !== undefined && t !== total) {
        total = t;
        bar.setTotal(t);
      }
      bar.update(done);
    },
    stop() {
      bar.stop();
    },
  };
}
