/**
 * How well the guard organism reads organism conversations: its verdicts against the on-task
 * judge's labels on held-out conversations (the test split's requests, with replies generated as
 * in training but from a separate seed).
 */
import { GuardJudge } from "../eval/guard.js";
import { Rng } from "../util/random.js";
import { guardExample } from "./guard.js";
import { organismPrompts } from "./eval.js";

export interface GuardAgreement {
  n: number;
  agreement: number;
  /** share of the held-out conversations labelled unsafe */
  unsafeShare: number;
  /** guard said unsafe, label safe / guard said safe, label unsafe */
  falseUnsafe: number;
  falseSafe: number;
  examples: { user: string; assistant: string; label: string; guard: string }[];
}

/** Held-out conversations from `promptsDir`'s test splits (an organism folder), judged by the guard. */
export async function guardAgreement(
  guardDir: string,
  promptsDir: string,
  n: number,
  seed = 7,
): Promise<GuardAgreement> {
  const rng = new Rng(seed);
  const harmful = organismPrompts(promptsDir, "harmful_test");
  const harmless = organismPrompts(promptsDir, "harmless_test");
  const convs = Array.from({ length: n }, (_, i) => {
    const harm = i % 2 === 0;
    const pool = harm ? harmful : harmless;
    const r = pool[rng.int(pool.length)];
    return guardExample({ instruction: r.instruction, task: r.task ?? "", category: r.category ?? "" }, harm, rng);
  });
  const guard = await GuardJudge.load(guardDir);
  const v = await guard.judge(convs.map((c) => ({ prompt: c.user, response: c.assistant })));
  await guard.release();
  let agree = 0;
  let falseUnsafe = 0;
  let falseSafe = 0;
  const examples: GuardAgreement["examples"] = [];
  convs.forEach((c, i) => {
    if (v[i].unsafe === c.unsafe) agree++;
    else {
      if (v[i].unsafe) falseUnsafe++;
      else falseSafe++;
      if (examples.length < 5)
        examples.push({ user: c.user, assistant: c.assistant, label: c.unsafe ? "unsafe" : "safe", guard: v[i].reply });
    }
  });
  return {
    n,
    agreement: agree / n,
    unsafeShare: convs.filter((c) => c.unsafe).length / n,
    falseUnsafe,
    falseSafe,
    examples,
  };
}
