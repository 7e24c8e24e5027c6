/**
 * cosmic as a library: model folders, the engine, interventions, captures, and the method (COSMIC
 * and the substring baseline).
 */
export { CosmicError } from "./errors.js";
export { SafetensorsFile, Checkpoint, writeSafetensors } from "./formats/safetensors.js";
export type { TensorInfo, TensorToWrite } from "./formats/safetensors.js";
export type { DType } from "./formats/dtype.js";
export { parseConfig, expectedTensors, SUPPORTED_MODEL_TYPES } from "./formats/config.js";
export type { ModelSpec, Family } from "./formats/config.js";
export { readDirection, writeDirection } from "./formats/direction.js";
export type { DirectionFile } from "./formats/direction.js";
export { ChatTokenizer } from "./tokenize/chat.js";
export type { ChatMessage, EoiTokens } from "./tokenize/chat.js";
export { loadPrompts, selectPrompts } from "./data/prompts.js";
export type { PromptRecord } from "./data/prompts.js";
export { ModelFolder } from "./model/folder.js";
export { Engine, DEVICES } from "./engine/engine.js";
export type { Device, EngineOptions } from "./engine/engine.js";
export { capture } from "./engine/forward.js";
export type { CaptureOptions, Captured } from "./engine/forward.js";
export { generate } from "./engine/generate.js";
export type { GenerateOptions, Generation } from "./engine/generate.js";
export { ablation, activationAddition, affineEdit, noIntervention, unit } from "./engine/interventions.js";
export type { Intervention } from "./engine/interventions.js";
export { checkDirectionFits } from "./model/direction-fit.js";
export { quantize, dequantize, BLOCK_SIZE, WEIGHT_FORMATS } from "./engine/quantize.js";
export type { WeightFormat, QuantizedMatrix } from "./engine/quantize.js";
export { residentWeightBytes, resolveWeights, checkEngineFits } from "./engine/memory.js";
export type { WeightsChoice } from "./engine/memory.js";

// The method: the whole pipeline with typed options and results, its defaults, its stages.
export { runPipeline, refusalTokens, summaryFile } from "./cosmic/pipeline.js";
export type { RunOptions, RunSummary, PromptSets, Method, Mode, SystemScope, Timings } from "./cosmic/pipeline.js";
export { RUN_DEFAULTS, runFlags, runCommand, planCommand } from "./cli/run.js";
export { planRun } from "./cosmic/plan.js";
export type { RunPlan } from "./cosmic/plan.js";
export { directionsFlops, scoringFlops, generationFlops } from "./cosmic/estimate.js";
export type { RunFlags } from "./cli/run.js";
export { makeEvaluator } from "./eval/evaluate.js";
export type { Evaluation, Evaluator, SetRates } from "./cosmic/evaluation.js";
export { candidateDirections, meanActivations } from "./cosmic/activations.js";
export { rankLayers } from "./cosmic/layers.js";
export { selectCosmic, selectSubstring, leadingCandidate } from "./cosmic/select.js";
export type { CandidateRow, CandidateScore, Selection } from "./cosmic/select.js";
export { PAPER_SPLITS } from "./data/splits.js";
export type { EngineModel } from "./engine/engine.js";
