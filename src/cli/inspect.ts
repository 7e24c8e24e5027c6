import { ModelFolder } from "../model/folder.js";

const SAMPLE = "Give me three tips for staying healthy.";

export interface InspectReport {
  dir: string;
  spec: ModelFolder["spec"];
  parameters: number;
  dtype: string;
  shards: number;
  eosTokenIds: number[];
  sampleInstruction: string;
  renderedPrompt: string;
  eoi: { ids: number[]; text: string; tokens: string[] };
}

export function inspectModel(dir: string, chatTemplate?: string): InspectReport {
  const m = ModelFolder.open(dir, { chatTemplate });
  const eoi = m.tokenizer.eoiTokens();
  return {
    dir,
    spec: m.spec,
    parameters: m.checkpoint.parameterCount(),
    dtype: m.checkpoint.dominantDtype(),
    shards: m.checkpoint.files.length,
    eosTokenIds: m.eosTokenIds,
    sampleInstruction: SAMPLE,
    renderedPrompt: m.tokenizer.formatPrompt(SAMPLE),
    eoi: { ids: eoi.ids, text: eoi.text, tokens: eoi.ids.map((i) => m.tokenizer.decode([i])) },
  };
}

export function formatInspect(r: InspectReport): string {
  const s = r.spec;
  const lines = [
    `model       ${r.dir}`,
    `family      ${s.family} (${s.architecture})`,
    `parameters  ${r.parameters.toLocaleString("en-US")} (${r.dtype}, ${r.shards} file${r.shards > 1 ? "s" : ""})`,
    `layers      ${s.numLayers}   width ${s.hiddenSize}   MLP ${s.intermediateSize} (${s.activation})   ` +
      `vocab ${s.vocabSize}`,
    `attention   ${s.numHeads} heads / ${s.numKvHeads} KV heads × ${s.headDim}; scale ${s.attnScale.toPrecision(4)}` +
      (s.attnSoftcap !== null ? `; soft-cap ${s.attnSoftcap}` : "") +
      (s.slidingWindow.some((w) => w !== null)
        ? `; sliding window ${[...new Set(s.slidingWindow.filter((w) => w !== null))].join("/")} on ` +
          `${s.slidingWindow.filter((w) => w !== null).length} layers`
        : ""),
    `norm        ${s.norm.kind} eps ` +
      `${s.norm.eps}${s.sandwichNorms ? " (pre and post)" : ""}${s.qkNorm ? "; q/k norms" : ""}`,
    `rope        theta ${s.rope.theta}` +
      (s.rope.scaling ? `, ${s.rope.scaling.type} scaling ×${s.rope.scaling.factor}` : "") +
      `, rotary dim ${s.rope.rotaryDim}` +
      (s.rope.local
        ? `; theta ${s.rope.local.theta} unscaled on the ${s.rope.local.layers.filter(Boolean).length} sliding layers`
        : "") +
      `; context ${s.maxPositionEmbeddings}`,
    `biases      qkv ${s.qkvBias}, o ${s.oBias}, mlp ${s.mlpBias}`,
    `embeddings  tied ${s.tieWordEmbeddings}, scale ` +
      `${s.embeddingScale}${s.finalSoftcap !== null ? `; final soft-cap ${s.finalSoftcap}` : ""}`,
    `eos         ${r.eosTokenIds.join(", ")}`,
    `EOI tokens  ${JSON.stringify(r.eoi.text)} → ids [${r.eoi.ids.join(", ")}] (${r.eoi.ids.length} positions)`,
    ``,
    `sample prompt for ${JSON.stringify(r.sampleInstruction)}:`,
    r.renderedPrompt,
  ];
  return lines.join("\n");
}
