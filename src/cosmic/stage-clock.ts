/**
 * How long each stage of a run took, beside the estimate the run printed before the stage's long
 * part, in `stage_timings.json` — so "it said 88 min, it took 96" can be read from the run folder.
 * Wall-clock times are kept out of the artifacts (two identical runs write identical artifacts),
 * as the scoring's split is in timings.json. The file is rewritten after every stage, so an
 * interrupted run keeps the times of the stages it finished; a stage reused from the run folder
 * keeps the time of the invocation that computed it (same stage key); one recomputed replaces it.
 */
import { describeMachine } from "../util/machine.js";
import type { RunStore } from "./run-store.js";

export const STAGE_TIMINGS_FILE = "stage_timings.json";

export interface StageTiming {
  /** the stage's key (the hash of its inputs) it was computed for */
  key: string;
  /** wall-clock seconds of its computation, sessions' build left out */
  seconds: number;
  /**
   * the stage's time as estimated before its long part (scores, evaluation): the time printed for
   * that part plus what the stage had already run (clean passes, calibration), else null
   */
  estimate_seconds: number | null;
  /** the machine it ran on (describeMachine); null in files written before it was kept */
  machine: string | null;
}

export interface StageTimings {
  /** in the order the run reached them */
  stages: Record<string, StageTiming>;
  /** building the onnxruntime sessions, in the last invocation that built them */
  session_build_seconds: number | null;
}

function isTiming(t: unknown): t is StageTiming {
  const x = t as Partial<StageTiming> | null;
  return (
    !!x &&
    typeof x.key === "string" &&
    typeof x.seconds === "number" &&
    (x.estimate_seconds === null || typeof x.estimate_seconds === "number") &&
    (x.machine === undefined || x.machine === null || typeof x.machine === "string")
  );
}

export class StageClock {
  /** entries of an earlier invocation, for stages this one has not reached yet */
  private readonly earlier: Record<string, StageTiming> = {};
  private readonly stages: Record<string, StageTiming> = {};
  private readonly estimates = new Map<string, number>();
  private building = 0;
  private buildSeconds: number | null = null;
  /** when the stage being computed began, and the building seconds then */
  private current: { at: number; built: number } | null = null;
  private readonly machine = describeMachine();

  constructor(private readonly store: RunStore) {
    try {
      const old = store.readJson<Partial<StageTimings>>(STAGE_TIMINGS_FILE);
      for (const [name, t] of Object.entries(old.stages ?? {}))
        if (isTiming(t)) this.earlier[name] = { ...t, machine: t.machine ?? null };
      if (typeof old.session_build_seconds === "number") this.buildSeconds = old.session_build_seconds;
    } catch {
      /* none yet, or not readable: start afresh */
    }
  }

  built(seconds: number): void {
    this.building += seconds;
    this.buildSeconds = this.building;
  }

  /** The stage being computed begins now. */
  begin(): void {
    this.current = { at: performance.now(), built: this.building };
  }

  /** Seconds the stage being computed has run so far, sessions' build left out. */
  get stageSeconds(): number {
    if (!this.current) return 0;
    return (performance.now() - this.current.at) / 1000 - (this.building - this.current.built);
  }

  /**
   * What the run printed before `stage`'s long part: its seconds. Kept with what the stage had run
   * by then, so that it compares with the whole stage's time (on the strong organism the scores'
   * clean passes and calibration are a fifth of the stage).
   */
  estimate(stage: string, seconds: number): void {
    this.estimates.set(stage, this.stageSeconds + seconds);
  }

  /** `stage` was computed now: its time since begin(), sessions' build left out. */
  computed(stage: string, key: string): void {
    const seconds = this.stageSeconds;
    this.current = null;
    delete this.earlier[stage];
    this.stages[stage] = { key, seconds, estimate_seconds: this.estimates.get(stage) ?? null, machine: this.machine };
    this.write();
  }

  /** `stage` was reused from the run folder: the time it was computed in stays, if it is for this key. */
  reused(stage: string, key: string): void {
    const t = this.earlier[stage];
    delete this.earlier[stage];
    if (t && t.key === key) this.stages[stage] = t;
    this.write();
  }

  /** The times of this run's stages (a stage it did not reach, e.g. after --skip-eval, is dropped). */
  finish(): StageTimings {
    for (const name of Object.keys(this.earlier)) delete this.earlier[name];
    this.write();
    return this.view();
  }

  private view(): StageTimings {
    return { stages: { ...this.stages, ...this.earlier }, session_build_seconds: this.buildSeconds };
  }

  private write(): void {
    this.store.writeRunJson(STAGE_TIMINGS_FILE, this.view());
  }
}

/** One line: each stage's time, with the estimate beside it where one was printed. */
export function describeStageTimings(t: StageTimings, format: (seconds: number) => string): string {
  const parts = Object.entries(t.stages).map(([name, s]) => {
    if (s.estimate_seconds === null) return `${name} ${format(s.seconds)}`;
    const off = Math.round((100 * (s.seconds - s.estimate_seconds)) / s.estimate_seconds);
    return `${name} ${format(s.seconds)} (estimate ${format(s.estimate_seconds)}, ${off >= 0 ? "+" : ""}${off} %)`;
  });
  const build = t.session_build_seconds === null ? "" : `; building sessions ${format(t.session_build_seconds)}`;
  return `stage times: ${parts.join(", ")}${build}`;
}
