/**
 * `cosmic organism eval`: the behaviour targets, measured with greedy generation through the
 * engine (so the folder is exercised exactly as a downloaded model would be) and the substring
 * judge, on the held-out test splits in the organism's prompts/ folder.
 */
import fs from "node:fs";
import path from "node:path";
import { fileError } from "../errors.js";
import { loadPrompts, PromptRecord } from "../data/prompts.js";
import { Engine } from "../engine/engine.js";
import { generate } from "../engine/generate.js";
import { ModelFolder } from "../model/folder.js";
import { isRefusal, judgeList } from "../eval/judge.js";
import { isOnTask } from "../eval/verdicts.js";
import { HARMFUL, HARMLESS } from "./data.js";
import { ADVERSARIAL_SYSTEM } from "./data.js";

export interface BehaviourReport {
  model: string;
  judge: string;
  max_new_tokens: number;
  counts: { harmful: number; harmless: number };
  harmful_refusal: number;
  harmless_refusal: number;
  /** answered on task (the on-task judge), where the prompts carry tasks */
  harmful_on_task: number | null;
  harmless_on_task: number | null;
  adversarial_harmful_refusal: number;
  adversarial_harmless_refusal: number;
  examples: { instruction: string; system: string | null; response: string }[];
}

export function organismPrompts(dir: string, split: string): PromptRecord[] {
  const f = path.join(dir, "prompts", `${split}.json`);
  if (!fs.existsSync(f))
    throw fileError(f, "missing: organism eval needs the prompt splits written by cosmic organism train");
  return loadPrompts(f);
}

export async function evaluateOrganism(
  dir: string,
  opts: {
    limit?: number;
    maxNewTokens?: number;
    batchSize?: number;
    engine?: Engine;
    progress?: (done: number, total: number) => void;
  } = {},
): Promise<BehaviourReport> {
  const folder = ModelFolder.open(dir);
  const engine = opts.engine ?? (await Engine.load(folder));
  const judge = judgeList("jailbreakbench");
  const lim = (xs: PromptRecord[]) => (opts.limit ? xs.slice(0, opts.limit) : xs);
  const harmful = lim(organismPrompts(dir, "harmful_test"));
  const harmless = lim(organismPrompts(dir, "harmless_test"));
  const maxNewTokens = opts.maxNewTokens ?? 32;
  const examples: BehaviourReport["examples"] = [];
  const total = 2 * (harmful.length + harmless.length);
  let done = 0;
  const tasks = [...HARMFUL, ...HARMLESS].flatMap((t) => t.tasks);
  const onTask: Record<string, number | null> = {};
  const rate = async (recs: PromptRecord[], system?: string, name?: string): Promise<number> => {
    const ids = recs.map((r) => folder.tokenizer.encode(folder.tokenizer.formatPrompt(r.instruction, system)));
    const gens = await generate(engine, ids, {
      maxNewTokens,
      batchSize: opts.batchSize ?? 64,
      onBatch: (n) => opts.progress?.(done + n, total),
    });
    done += recs.length;
    let refused = 0;
    let answered = 0;
    gens.forEach((g, i) => {
      const text = folder.tokenizer.decode(g.tokens, true);
      if (isRefusal(text, judge)) refused++;
      const task = recs[i].task;
      if (task && isOnTask(text, task, tasks, judge, !g.stopped)) answered++;
      if (i < 2) examples.push({ instruction: recs[i].instruction, system: system ?? null, response: text });
    });
    if (name) onTask[name] = recs.every((r) => r.task) ? answered / recs.length : null;
    return refused / recs.length;
  };
  const harmfulRefusal = await rate(harmful, undefined, "harmful");
  const harmlessRefusal = await rate(harmless, undefined, "harmless");
  const report: BehaviourReport = {
    model: dir,
    judge: "jailbreakbench",
    max_new_tokens: maxNewTokens,
    counts: { harmful: harmful.length, harmless: harmless.length },
    harmful_refusal: harmfulRefusal,
    harmless_refusal: harmlessRefusal,
    harmful_on_task: onTask.harmful,
    harmless_on_task: onTask.harmless,
    adversarial_harmful_refusal: await rate(harmful, ADVERSARIAL_SYSTEM),
    adversarial_harmless_refusal: await rate(harmless, ADVERSARIAL_SYSTEM),
    examples,
  };
  if (!opts.engine) await engine.release();
  return report;
}
