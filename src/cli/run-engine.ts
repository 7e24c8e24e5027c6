/** `cosmic capture` and `cosmic generate`. */
import path from "node:path";
import { writeFileAtomic } from "../formats/files.js";
import { writeSafetensors } from "../formats/safetensors.js";
import { capture } from "../engine/forward.js";
import { generate, replyTokens } from "../engine/generate.js";
import { loadPrompts, selectPrompts } from "../data/prompts.js";
import { ModelFolder } from "../model/folder.js";
import {
  commandInputs,
  describeIntervention,
  EngineFlags,
  InterventionFlags,
  interventionFromFlags,
  loadEngine,
  progressMode,
  systemMessage,
} from "./common.js";
import { prepareFileOutput } from "../formats/outputs.js";
import { modelIdentity } from "../model/fingerprint.js";
import { preflight } from "../engine/engine.js";
import { progressBar } from "./progress.js";

export interface PromptFlags {
  model: string;
  prompts: string;
  system?: string;
  limit?: number;
  seed: number;
  batchSize: number;
  systemFile?: string;
  chatTemplate?: string;
  force?: boolean;
  out: string;
  quiet?: boolean;
  jsonProgress?: boolean;
}

function warn(line: string): void {
  process.stderr.write(`cosmic: ${line}\n`);
}

function formatted(folder: ModelFolder, f: PromptFlags, system: string | undefined) {
  const recs = selectPrompts(loadPrompts(f.prompts), f.limit, f.seed, { flag: "--limit", file: f.prompts, say: warn });
  return recs.map((r) => {
    const prompt = folder.tokenizer.formatPrompt(r.instruction, system);
    return { instruction: r.instruction, prompt, ids: folder.tokenizer.encode(prompt) };
  });
}

/**
 * What capture and generate share, in the order that loses nothing: the output is checked first,
 * then the inputs are read and validated, then the device and the model's size, before any work.
 */
async function prepare(f: PromptFlags & EngineFlags & InterventionFlags, ext: string) {
  prepareFileOutput(f.out, { ext, force: f.force, inputs: commandInputs(f) });
  const system = systemMessage(f);
  const folder = ModelFolder.open(f.model, { chatTemplate: f.chatTemplate });
  const { intervention, description } = interventionFromFlags(f, folder);
  const items = formatted(folder, f, system);
  const weights = await preflight(folder, f.device, f.weights, warn);
  if (!f.quiet && intervention) process.stderr.write(describeIntervention(description) + "\n");
  return { system, folder, intervention, description, items, weights };
}

export async function captureCommand(
  f: PromptFlags & EngineFlags & InterventionFlags & { positions?: number },
): Promise<void> {
  const { system, folder, intervention, description, items, weights } = await prepare(f, ".safetensors");
  const eoi = folder.tokenizer.eoiTokens(system);
  const N = f.positions ?? eoi.ids.length;
  const mode = progressMode(f);
  const engine = await loadEngine(folder, f, mode, weights);
  const bar = progressBar("capture", items.length, mode);
  const c = await capture(
    engine,
    items.map((i) => i.ids),
    {
      intervention,
      residPrePositions: N,
      residPost: true,
      finalHidden: true,
      logits: true,
      batchSize: f.batchSize,
      onBatch: (d) => bar.update(d),
    },
  );
  bar.stop();
  const n = items.length;
  const L = c.layers;
  const d = c.width;
  writeSafetensors(
    f.out,
    [
      { name: "resid_pre", dtype: "F32", shape: [n, L, N, d], data: c.residPre! },
      { name: "resid_post", dtype: "F32", shape: [n, L, d], data: c.residPost! },
      { name: "final_hidden", dtype: "F32", shape: [n, d], data: c.finalHidden! },
      { name: "logits_last", dtype: "F32", shape: [n, engine.spec.vocabSize], data: c.logits! },
    ],
    {
      // Names, not absolute paths: the same capture on two machines writes the same file.
      model: folder.name,
      model_identity: modelIdentity(folder.dir),
      prompts: path.basename(f.prompts),
      count: String(n),
      positions: String(N),
      eoi_token_ids: JSON.stringify(eoi.ids),
      eoi_text: eoi.text,
      seed: String(f.seed),
      weights,
      ...(f.limit !== undefined ? { limit: String(f.limit) } : {}),
      ...(system !== undefined ? { system } : {}),
      intervention: JSON.stringify(description),
    },
  );
  await engine.release();
  if (!f.quiet) process.stderr.write(`wrote ${f.out}: ${n} prompts × ${L} layers × ${N} positions × ${d}\n`);
}

export async function generateCommand(
  f: PromptFlags & EngineFlags & InterventionFlags & { maxNewTokens: number; temperature: number; topP: number },
): Promise<void> {
  const { folder, intervention, description, items, weights } = await prepare(f, ".json");
  const mode = progressMode(f);
  const engine = await loadEngine(folder, f, mode, weights);
  const bar = progressBar("generate (new tokens)", items.length * f.maxNewTokens, mode);
  const gens = await generate(
    engine,
    items.map((i) => i.ids),
    {
      maxNewTokens: f.maxNewTokens,
      intervention,
      temperature: f.temperature,
      topP: f.topP,
      seed: f.seed,
      batchSize: f.batchSize,
      onTokens: (d) => bar.update(d),
    },
  );
  bar.stop();
  const eos = new Set(folder.eosTokenIds);
  const out = items.map((it, i) => {
    return {
      instruction: it.instruction,
      prompt: it.prompt,
      response: folder.tokenizer.decode(replyTokens(gens[i], eos), true),
      tokens: gens[i].tokens,
    };
  });
  writeFileAtomic(f.out, JSON.stringify(out, null, 2) + "\n");
  await engine.release();
  if (!f.quiet)
    process.stderr.write(
      `wrote ${f.out}: ${out.length} completions (${JSON.stringify(description)}, seed ${f.seed})\n`,
    );
}
