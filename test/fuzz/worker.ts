/**
 * The fuzzer's worker process: runs cases in-process as the CLI would (open, format, build the
 * engine, a forward pass, two generated tokens) and reports how each ended. It does nothing
 * unless started by the runner (the test runner also loads every file under test/).
 */
import { CosmicError } from "../../src/errors.js";
import { fsErrorLine } from "../../src/formats/outputs.js";
import { ModelFolder } from "../../src/model/folder.js";
import { checkEngineFits, Engine } from "../../src/engine/engine.js";
import { capture } from "../../src/engine/forward.js";
import { generate } from "../../src/engine/generate.js";
import { Intervention } from "../../src/engine/interventions.js";
import { loadPrompts, selectPrompts } from "../../src/data/prompts.js";
import { readDirection } from "../../src/formats/direction.js";
import { checkDirectionFits } from "../../src/model/direction-fit.js";
import { defaultIntervention, interventionOf } from "../../src/engine/steer.js";
import type { FuzzCase } from "./cases.js";

export type Outcome = { kind: "pass" } | { kind: "error"; line: string } | { kind: "crash"; detail: string };

let base: { folder: ModelFolder; engine: Engine } | null = null;

async function baseModel(dir: string): Promise<{ folder: ModelFolder; engine: Engine }> {
  if (!base) {
    const folder = ModelFolder.open(dir);
    base = { folder, engine: await Engine.load(folder, { threads: 1 }) };
  }
  return base;
}

async function forward(
  engine: Engine,
  folder: ModelFolder,
  instructions: string[],
  intervention?: Intervention,
): Promise<void> {
  const ids = instructions.map((i) => folder.tokenizer.encode(folder.tokenizer.formatPrompt(i)));
  const c = await capture(engine, ids, { logits: true, intervention });
  const bad = c.logits!.findIndex((x) => !Number.isFinite(x));
  if (bad >= 0) throw new Error(`exit 0 with a non-finite logit (${c.logits![bad]} at ${bad})`);
  const g = await generate(engine, ids.slice(0, 1), { maxNewTokens: 2, intervention });
  folder.tokenizer.decode(g[0].tokens, true);
}

export async function runCase(c: FuzzCase): Promise<Outcome> {
  try {
    if (c.target === "prompts") {
      const { folder, engine } = await baseModel(c.model);
      const recs = selectPrompts(loadPrompts(c.file!), 3, 1);
      await forward(
        engine,
        folder,
        recs.map((r) => r.instruction),
      );
    } else if (c.target === "direction") {
      const { folder, engine } = await baseModel(c.model);
      const dir = readDirection(c.file!, folder.spec.hiddenSize);
      checkDirectionFits(dir, folder);
      const iv = interventionOf(dir, defaultIntervention(dir), folder, dir.layer, 1);
      await forward(engine, folder, ["How do I bake bread?"], iv);
    } else {
      const folder = ModelFolder.open(c.model);
      folder.tokenizer.eoiTokens();
      checkEngineFits(folder);
      const engine = await Engine.load(folder, { threads: 1 });
      try {
        await forward(engine, folder, ["How do I bake bread?", "Hi"]);
      } finally {
        await engine.release();
      }
    }
    return { kind: "pass" };
  } catch (e) {
    if (e instanceof CosmicError) return { kind: "error", line: e.message.split("\n")[0] };
    const fsLine = fsErrorLine(e);
    if (fsLine) return { kind: "error", line: fsLine };
    return {
      kind: "crash",
      detail: String((e as Error)?.stack ?? e)
        .split("\n")
        .slice(0, 6)
        .join(" | "),
    };
  }
}

if (process.env.COSMIC_FUZZ_WORKER === "1" && process.send) {
  process.on("message", (c: FuzzCase) => {
    void runCase(c).then((o) => process.send!(o));
  });
}
