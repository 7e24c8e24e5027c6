/** The `cosmic` command line: thin wrappers that parse flags and call the library. */
import { Command, CommanderError, Option } from "commander";
import { CosmicError } from "../errors.js";
import { deviceArg, floatArg, intArg, systemMessage, weightsArg } from "./common.js";
import { fsErrorLine } from "../formats/outputs.js";
import { formatInspect, inspectModel } from "./inspect.js";
import { captureCommand, generateCommand } from "./run-engine.js";
import { formatSummary, planCommand, RUN_DEFAULTS, runCommand, RunFlags } from "./run.js";
import { summaryFile } from "../cosmic/pipeline.js";
import { organismEvalCommand, organismTrainCommand, TrainFlags } from "./organism.js";
import { organismPromptDir } from "../organism/info.js";
import { PAPER_SPLITS } from "../data/splits.js";
import { abliterateCommand, controlVectorCommand, directionCommand, ggufCommand } from "./export.js";
import { writeReport } from "../report/report.js";
import { demoCommand } from "./demo.js";
import { chatCommand, ChatFlags } from "./chat.js";
import { serveCommand, ServeFlags } from "./serve.js";

const program = new Command();
program
  .name("cosmic")
  .description("Find and steer the refusal direction of open-weight chat models (COSMIC and Arditi et al.)")
  .version("0.1.0")
  .exitOverride()
  .configureOutput({ writeErr: (s) => process.stderr.write(s) });

program
  .command("inspect")
  .description("describe a Hugging Face model folder: architecture, parameters, chat template, EOI tokens")
  .requiredOption("--model <dir>", "model folder (config.json, safetensors, tokenizer)")
  .option("--json", "print JSON")
  .option(
    "--chat-template <file>",
    "a Jinja chat template to use instead of the model folder's (Llama-2-chat: data/chat-templates/llama2-chat.jinja)",
  )
  .action((flags: { model: string; json?: boolean; chatTemplate?: string }) => {
    const r = inspectModel(flags.model, flags.chatTemplate);
    process.stdout.write((flags.json ? JSON.stringify(r, null, 2) : formatInspect(r)) + "\n");
  });

/** Where and how the engine runs: --device, --threads, --weights. */
function deviceOptions(c: Command): Command {
  return c
    .addOption(
      new Option("--device <device>", "execution provider: cpu, webgpu or cuda").default("cpu").argParser(deviceArg),
    )
    .option("--threads <n>", "intra-op threads per session (default: onnxruntime's choice)", intArg("--threads", 1))
    .addOption(
      new Option(
        "--weights <format>",
        "Linear weights as f32, int8 or int4 (onnxruntime's MatMulNBits, blocks of 32; the head stays 8-bit), " +
          "or auto: f32 when it fits in the memory available now, else the first of int8, int4 that does",
      )
        .default("auto")
        .argParser(weightsArg),
    );
}

function engineOptions(c: Command): Command {
  return deviceOptions(c)
    .option("--batch-size <n>", "prompts per batch", intArg("--batch-size", 1), RUN_DEFAULTS.batchSize)
    .option("--quiet", "no progress on stderr")
    .option("--json-progress", "progress as JSON lines on stderr");
}

function promptOptions(c: Command): Command {
  return c
    .requiredOption("--model <dir>", "model folder")
    .requiredOption("--prompts <file>", "instructions: JSON array, JSONL or CSV")
    .option("--system <text>", "system message for every prompt")
    .option("--system-file <file>", "read the system message from a file (for long messages)")
    .option(
      "--chat-template <file>",
      "a Jinja chat template to use instead of the model folder's (Llama-2-chat: " +
        "data/chat-templates/llama2-chat.jinja)",
    )
    .option("--limit <n>", "use at most n prompts (seeded sample)", intArg("--limit", 1))
    .option("--seed <n>", "seed for sampling", intArg("--seed"), 42)
    .option("--direction <file>", "direction safetensors (tensor 'direction', optional 'reference', metadata 'layer')")
    .option(
      "--intervention <kind>",
      "ablate | actadd | ace-ablate | ace-actadd (default: the direction file's own mode — ace-ablate for an " +
        "affine direction, ablate for a linear one)",
    )
    .option("--layer <n>", "layer for actadd / ACE (default: the direction file's)", intArg("--layer"))
    .option("--coeff <alpha>", "coefficient α for addition (default 1)", floatArg("--coeff"))
    .option(
      "--allow-other-model",
      "use a direction whose metadata names another checkpoint or architecture (same width)",
    )
    .option("--force", "replace an existing --out file");
}

engineOptions(promptOptions(program.command("capture")))
  .description("capture activations (resid_pre, resid_post, final_hidden, logits_last) into a safetensors file")
  .option(
    "--positions <n>",
    "block-input positions to keep (default: the number of EOI tokens)",
    intArg("--positions", 1),
  )
  .requiredOption("--out <file>", "output .safetensors")
  .action(async (flags) => captureCommand(flags));

engineOptions(promptOptions(program.command("generate")))
  .description("generate completions (greedy by default) into a JSON file")
  .option("--max-new-tokens <n>", "tokens to generate per prompt", intArg("--max-new-tokens", 1), 64)
  .option("--temperature <t>", "sampling temperature (0 = greedy)", floatArg("--temperature", { min: 0 }), 0)
  .option("--top-p <p>", "nucleus sampling mass", floatArg("--top-p", { above: 0, max: 1 }), 1)
  .requiredOption("--out <file>", "output .json")
  .action(async (flags) => generateCommand(flags));

/** Where the prompts come from, how many, the seed and the completion length. */
function promptSetOptions(c: Command): Command {
  return c
    .option(
      "--data <dir>",
      "folder with the reference splits (harmful_train.json, harmless_val.json, …; default: an organism's own " +
        "prompts/, else the paper's splits shipped in data/cosmic-splits)",
    )
    .option("--harmful-train <file>", "harmful train prompts")
    .option("--harmful-val <file>", "harmful validation prompts")
    .option("--harmful-test <file>", "harmful test prompts")
    .option("--harmless-train <file>", "harmless train prompts")
    .option("--harmless-val <file>", "harmless validation prompts")
    .option("--harmless-test <file>", "harmless test prompts")
    .option("--n-train <n>", "train prompts per set", intArg("--n-train", 1), RUN_DEFAULTS.nTrain)
    .option("--n-val <n>", "validation prompts per set", intArg("--n-val", 1), RUN_DEFAULTS.nVal)
    .option("--n-test <n>", "test prompts per set", intArg("--n-test", 1), RUN_DEFAULTS.nTest)
    .option("--seed <n>", "seed for every sampled choice", intArg("--seed"), RUN_DEFAULTS.seed)
    .option(
      "--max-new-tokens <n>",
      "tokens per evaluation completion (the reference uses 512)",
      intArg("--max-new-tokens", 1),
      RUN_DEFAULTS.maxNewTokens,
    );
}

/** System messages and the chat template. */
function chatOptions(c: Command): Command {
  return c
    .option("--system <text>", "system message for direction generation and selection (e.g. the adversarial one)")
    .option("--system-file <file>", "read --system's message from a file (for long messages)")
    .option(
      "--chat-template <file>",
      "a Jinja chat template to use instead of the model folder's (Llama-2-chat: " +
        "data/chat-templates/llama2-chat.jinja)",
    )
    .option(
      "--system-scope <s>",
      "what --system applies to: selection (candidate directions, L_low and scores) or directions (candidate " +
        "directions only, as the authors' system-prompt pipeline)",
      RUN_DEFAULTS.systemScope,
    )
    .option("--eval-system <text>", "system message for the evaluation completions (default: none)");
}

/** The method: interventions, selection and its thresholds, L_low, steering toward refusal. */
function methodOptions(c: Command): Command {
  return c
    .option("--affine", "ACE interventions at the chosen layer (default, as the reference)")
    .option("--linear", "linear interventions: ablation at every layer, addition at the chosen layer")
    .option(
      "--selection <method>",
      "whose direction is the result: cosmic or substring (both are scored)",
      RUN_DEFAULTS.selection,
    )
    .option(
      "--kl-threshold <x>",
      "discard candidates with a larger KL score",
      floatArg("--kl-threshold", { min: 0 }),
      RUN_DEFAULTS.klThreshold,
    )
    .option(
      "--prune-layers <f>",
      "discard candidates in the last fraction of layers",
      floatArg("--prune-layers"),
      RUN_DEFAULTS.pruneLayers,
    )
    .option(
      "--low-layer-fraction <f>",
      "fraction of layers in L_low",
      floatArg("--low-layer-fraction"),
      RUN_DEFAULTS.lowLayerFraction,
    )
    .option(
      "--steer-toward-refusal",
      "weakly aligned models: L_low from the second half; sweep addition on harmful and harmless test prompts",
    )
    .option("--alphas <list>", "addition coefficients for --steer-toward-refusal", RUN_DEFAULTS.alphas);
}

/** Judges, the scoring schedule and the evaluation. */
function scoringAndJudgeOptions(c: Command): Command {
  return c
    .option("--judge <name>", "refusal phrase list: jailbreakbench or extended", RUN_DEFAULTS.judge)
    .option(
      "--refusal-phrases <list>",
      "phrases separated by | whose first tokens are the substring baseline's refusal tokens (default: the judge's)",
    )
    .option(
      "--schedule <s>",
      "scoring schedule: fast (every score of every candidate), lazy (only the scores the selections read: " +
        "the same directions, fewer passes), or naive (the reference's full passes; for comparison)",
      RUN_DEFAULTS.schedule,
    )
    .option(
      "--score-positions <n>",
      "score only the last n EOI positions (faster; the reference scores all)",
      intArg("--score-positions", 1),
    )
    .option("--skip-eval", "stop after selection")
    .option(
      "--judge-model <dir>",
      "a Llama-Guard-style classifier model folder (e.g. meta-llama/Llama-Guard-3-1B, or organisms/guard): " +
        "the strongest judge",
    )
    .option("--loss-data <file>", "{instruction, response} pairs (JSON array or JSON Lines) for the loss judge");
}

export function runOptions(c: Command): Command {
  return scoringAndJudgeOptions(methodOptions(chatOptions(promptSetOptions(c))));
}

engineOptions(runOptions(program.command("run")))
  .description("find the refusal direction: candidate directions, L_low, scores, selection, evaluation")
  .requiredOption("--model <dir>", "model folder")
  .requiredOption("--out <dir>", "run folder (resumable: finished stages are reused)")
  .option("--json", "machine-readable: progress as JSON lines on stderr, the summary as JSON on stdout")
  .option(
    "--dry-run",
    "print the plan (prompts, candidates, FLOPs per stage, memory, estimated time) and stop; writes nothing",
  )
  .action(async (flags: RunFlags & { dryRun?: boolean }) => {
    const data = { data: organismPromptDir(flags.model) ?? PAPER_SPLITS };
    if (flags.dryRun) {
      process.stdout.write((await planCommand(flags, data)).join("\n") + "\n");
      return;
    }
    const s = await runCommand(flags, data);
    process.stdout.write((flags.json ? JSON.stringify(summaryFile(s), null, 2) : formatSummary(s, flags.out)) + "\n");
  });

const organism = program
  .command("organism")
  .description("the model organism: a small chat model cosmic trains itself, which really refuses");
organism
  .command("train")
  .description("train a Llama-architecture chat model on generated chats and write a Hugging Face folder")
  .requiredOption("--out <dir>", "output model folder")
  .option(
    "--seed <n>",
    "seed for data, initialisation and batches (1 made the committed organisms)",
    intArg("--seed"),
    1,
  )
  .option(
    "--kind <kind>",
    "chat (helpful tuning, then safety tuning) or guard (a safe/unsafe classifier of organism conversations)",
    "chat",
  )
  .option("--alignment <kind>", "strong (safety data covers every harmful task) or weak (a share of them)", "strong")
  .option(
    "--helpful-steps <n>",
    "optimiser steps of stage (a), helpful tuning (default: the recipe's, 350)",
    intArg("--helpful-steps", 1),
  )
  .option(
    "--safety-steps <n>",
    "optimiser steps of stage (b), safety tuning (default: the recipe's, 250)",
    intArg("--safety-steps", 1),
  )
  .option("--steps <n>", "optimiser steps of the guard (--kind guard; default 500)", intArg("--steps", 1))
  .option("--batch-size <n>", "chats per step", intArg("--batch-size", 1), 32)
  .option("--lr <x>", "peak learning rate of stage (a) or of the guard (default 3e-3)", floatArg("--lr", { above: 0 }))
  .option("--safety-lr <x>", "peak learning rate of stage (b) (default 1.5e-3)", floatArg("--safety-lr", { above: 0 }))
  .option("--harmful <file>", "train on your own harmful instructions (with --harmless)")
  .option("--harmless <file>", "train on your own harmless instructions (with --harmful)")
  .option("--force", "replace an existing organism folder")
  .option("--threads <n>", "onnxruntime threads", intArg("--threads", 1))
  .option("--quiet", "no progress")
  .option("--json-progress", "progress as JSON lines on stderr")
  .action(async (flags: TrainFlags) => organismTrainCommand(flags));
organism
  .command("eval")
  .description("refusal rates on held-out harmful and harmless prompts, with and without the adversarial system prompt")
  .requiredOption("--model <dir>", "organism folder")
  .option("--limit <n>", "at most n prompts per set", intArg("--limit", 1))
  .option("--json", "print JSON")
  .option("--quiet", "no progress")
  .action(async (flags: { model: string; json?: boolean; quiet?: boolean; limit?: number }) =>
    organismEvalCommand(flags),
  );

const exp = program
  .command("export")
  .description("take a direction elsewhere: an orthogonalised checkpoint, a llama.cpp control vector, a plain file");
exp
  .command("abliterate")
  .description("write the weight-orthogonalised checkpoint (directional ablation baked into the weights)")
  .requiredOption("--model <dir>", "source model folder")
  .requiredOption("--direction <file>", "direction safetensors")
  .requiredOption("--out <dir>", "output model folder")
  .option("--dtype <dtype>", "original (each tensor's own) or f32", "original")
  .option("--force", "replace an existing output folder")
  .option("--as-linear", "abliterate an affine (ACE) direction anyway, as linear ablation at every layer")
  .option("--allow-other-model", "use a direction whose metadata names another checkpoint or architecture (same width)")
  .action((flags) => abliterateCommand(flags));
exp
  .command("gguf")
  .description("write the model as one GGUF file for llama.cpp / Ollama / LM Studio (optionally abliterated)")
  .requiredOption("--model <dir>", "source model folder")
  .option("--direction <file>", "abliterate with this direction first (exactly as export abliterate)")
  .option("--dtype <dtype>", "matrices as f32, f16 or bf16 (norms and biases stay f32)", "f32")
  .requiredOption("--out <file>", "output .gguf")
  .option("--force", "replace an existing file")
  .option("--as-linear", "abliterate with an affine (ACE) direction anyway, as linear ablation at every layer")
  .option("--allow-other-model", "use a direction whose metadata names another checkpoint or architecture (same width)")
  .action((flags) => ggufCommand(flags));
exp
  .command("control-vector")
  .description("write a llama.cpp control vector (GGUF) that adds α·r at the direction's layer")
  .requiredOption("--direction <file>", "direction safetensors")
  .option("--coeff <alpha>", "scale α", floatArg("--coeff"), 1)
  .option(
    "--layers <range>",
    "block inputs to add at, cosmic's 0-based convention (default: the direction's layer), e.g. 10-14",
  )
  .requiredOption("--out <file>", "output .gguf")
  .option("--force", "replace an existing file")
  .action((flags) => controlVectorCommand(flags));
exp
  .command("direction")
  .description("a run's direction as safetensors, npy or json")
  .requiredOption("--run <dir>", "run folder of cosmic run")
  .option("--format <format>", "safetensors, npy or json", "json")
  .option("--out <file>", "output file (default: RUN_DIR/direction.<format>)")
  .option("--force", "replace an existing --out file")
  .action((flags) => directionCommand(flags));

program
  .command("report")
  .description("write RUN_DIR/report/report.html (self-contained) and the plots as SVG files")
  .argument("<run_dir>", "run folder of cosmic run")
  .action((dir: string) => {
    const r = writeReport(dir);
    process.stdout.write(`wrote ${r.html} and ${r.svgs.length} SVG plots\n`);
  });

program
  .command("demo")
  .description("the whole method on the built-in strong organism, with the report (a few minutes on a CPU)")
  .option("--out <dir>", "run folder", "runs/demo")
  .option("--model <dir>", "another model folder with a prompts/ folder (default: the committed strong organism)")
  .option("--judge-model <dir>", "guard model for the strongest judge (default: the committed guard organism)")
  .option("--quiet", "no progress")
  .option("--json-progress", "progress as JSON lines on stderr")
  .action(
    async (flags: { out: string; model?: string; judgeModel?: string; quiet?: boolean; jsonProgress?: boolean }) =>
      demoCommand(flags),
  );

deviceOptions(program.command("chat"))
  .description("chat with a model in the terminal, toggling the intervention (/ablate, /add α, /off)")
  .requiredOption("--model <dir>", "model folder")
  .option("--direction <file>", "direction safetensors")
  .option("--intervention <kind>", "start with: ablate | actadd | ace-ablate | ace-actadd")
  .option("--layer <n>", "layer for addition (default: the direction file's)", intArg("--layer"))
  .option("--coeff <alpha>", "α for addition", floatArg("--coeff"))
  .option("--system <text>", "system message")
  .option("--system-file <file>", "read the system message from a file")
  .option(
    "--chat-template <file>",
    "a Jinja chat template to use instead of the model folder's (Llama-2-chat: data/chat-templates/llama2-chat.jinja)",
  )
  .option("--max-new-tokens <n>", "tokens per reply", intArg("--max-new-tokens", 1), 128)
  .option("--temperature <t>", "sampling temperature (0 = greedy)", floatArg("--temperature", { min: 0 }), 0)
  .option("--seed <n>", "sampling seed", intArg("--seed"), 0)
  .option("--quiet", "no loading messages on stderr")
  .option("--allow-other-model", "use a direction whose metadata names another checkpoint or architecture (same width)")
  .action(async (flags: ChatFlags & { systemFile?: string }) =>
    chatCommand({ ...flags, system: systemMessage(flags) }),
  );

deviceOptions(program.command("serve"))
  .description("an OpenAI-compatible HTTP server (chat and completions, streaming) with steering per request")
  .requiredOption("--model <dir>", "model folder")
  .option(
    "--direction <name=file>",
    'a direction preset, repeatable: requests steer with {"steering": {"direction": NAME}} or the model alias ' +
      "MODEL+ablate:NAME",
    (v: string, acc: string[]) => [...acc, v],
    [] as string[],
  )
  .option("--model-name <id>", "the model's id in the API (default: the folder's name)")
  .option("--host <host>", "address to listen on (loopback unless told otherwise)", "127.0.0.1")
  .option("--port <n>", "port (0 = any free one)", intArg("--port", 0, 65535), 8080)
  .option("--api-key <key>", "require Authorization: Bearer KEY (or set COSMIC_API_KEY)")
  .option("--max-batch <n>", "the most requests decoded together", intArg("--max-batch", 1), 16)
  .option("--max-queue <n>", "the most requests waiting to join the batch; more get 429", intArg("--max-queue", 0), 64)
  .option("--ctx <n>", "tokens a request may use, prompt and reply (default: the model's context)", intArg("--ctx", 2))
  .option(
    "--chat-template <file>",
    "a Jinja chat template to use instead of the model folder's (Llama-2-chat: data/chat-templates/llama2-chat.jinja)",
  )
  .option("--allow-other-model", "use a direction whose metadata names another checkpoint or architecture (same width)")
  .option("--quiet", "no progress or request log on stderr")
  .option("--json-progress", "loading progress as JSON lines on stderr")
  .action(async (flags: ServeFlags) => serveCommand(flags));

/**
 * Ctrl-C / kill: one line and exit 130. Outputs are only ever renamed into place whole, stage
 * records after their files, so what is on disk stays consistent; temporary files are removed
 * on exit (formats/files.ts) and the run folder's lock is released.
 */
function onInterrupt(): void {
  const handler = (): void => {
    const resumable = program.args[0] === "run" || program.args[0] === "demo";
    process.stderr.write(
      `\ncosmic: interrupted${resumable ? "; rerun the same command to resume (finished stages are kept)" : ""}\n`,
    );
    process.exit(130);
  };
  process.once("SIGINT", handler);
  process.once("SIGTERM", handler);
}

export async function main(argv: string[]): Promise<number> {
  onInterrupt();
  try {
    await program.parseAsync(argv);
    return 0;
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode === 0 ? 0 : 2;
    if (e instanceof CosmicError) {
      process.stderr.write(`cosmic: ${e.message.split("\n")[0]}\n`);
      return e.exitCode;
    }
    // A filesystem refusal (a full disk, a read-only folder, …) is the user's situation, not a bug.
    const fsLine = fsErrorLine(e);
    if (fsLine) {
      process.stderr.write(`cosmic: ${fsLine}\n`);
      return 2;
    }
    throw e;
  }
}
