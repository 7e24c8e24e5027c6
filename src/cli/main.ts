/** The `cosmic` command line: thin wrappers that parse flags and call the library. */
import { Command, CommanderError, Option } from "commander";
import { CosmicError } from "../errors.js";
import { deviceArg, floatArg, intArg } from "./common.js";
import { formatInspect, inspectModel } from "./inspect.js";
import { captureCommand, generateCommand } from "./run-engine.js";
import { formatSummary, runCommand, RunFlags } from "./run.js";

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
  .action((o: { model: string; json?: boolean }) => {
    const r = inspectModel(o.model);
    process.stdout.write((o.json ? JSON.stringify(r, null, 2) : formatInspect(r)) + "\n");
  });

function engineOptions(c: Command): Command {
  return c
    .addOption(new Option("--device <device>", "execution provider: cpu, webgpu or cuda").default("cpu").argParser(deviceArg))
    .option("--threads <n>", "intra-op threads per session (default: onnxruntime's choice)", intArg("--threads", 1))
    .option("--batch-size <n>", "prompts per batch", intArg("--batch-size", 1), 32)
    .option("--quiet", "no progress on stderr")
    .option("--json-progress", "progress as JSON lines on stderr");
}

function promptOptions(c: Command): Command {
  return c
    .requiredOption("--model <dir>", "model folder")
    .requiredOption("--prompts <file>", "instructions: JSON array, JSONL or CSV")
    .option("--system <text>", "system message for every prompt")
    .option("--limit <n>", "use at most n prompts (seeded sample)", intArg("--limit", 1))
    .option("--seed <n>", "seed for sampling", intArg("--seed"), 42)
    .option("--direction <file>", "direction safetensors (tensor 'direction', optional 'reference', metadata 'layer')")
    .option("--intervention <kind>", "ablate | actadd | ace-ablate | ace-actadd (default ablate with --direction)")
    .option("--layer <n>", "layer for actadd / ACE (default: the direction file's)", intArg("--layer"))
    .option("--coeff <alpha>", "coefficient α for addition (default 1)", floatArg("--coeff"));
}

engineOptions(promptOptions(program.command("capture")))
  .description("capture activations (resid_pre, resid_post, final_hidden, logits_last) into a safetensors file")
  .option("--positions <n>", "block-input positions to keep (default: the number of EOI tokens)", intArg("--positions", 1))
  .requiredOption("--out <file>", "output .safetensors")
  .action(async (o) => captureCommand(o));

engineOptions(promptOptions(program.command("generate")))
  .description("generate completions (greedy by default) into a JSON file")
  .option("--max-new-tokens <n>", "tokens to generate per prompt", intArg("--max-new-tokens", 1), 64)
  .option("--temperature <t>", "sampling temperature (0 = greedy)", floatArg("--temperature"), 0)
  .option("--top-p <p>", "nucleus sampling mass", floatArg("--top-p"), 1)
  .requiredOption("--out <file>", "output .json")
  .action(async (o) => generateCommand(o));

export function runOptions(c: Command): Command {
  return c
    .option("--data <dir>", "folder with the reference splits (harmful_train.json, harmless_val.json, …)")
    .option("--harmful-train <file>", "harmful train prompts").option("--harmful-val <file>", "harmful validation prompts").option("--harmful-test <file>", "harmful test prompts")
    .option("--harmless-train <file>", "harmless train prompts").option("--harmless-val <file>", "harmless validation prompts").option("--harmless-test <file>", "harmless test prompts")
    .option("--n-train <n>", "train prompts per set", intArg("--n-train", 1), 180)
    .option("--n-val <n>", "validation prompts per set", intArg("--n-val", 1), 100)
    .option("--n-test <n>", "test prompts per set", intArg("--n-test", 1), 512)
    .option("--seed <n>", "seed for every sampled choice", intArg("--seed"), 42)
    .option("--max-new-tokens <n>", "tokens per evaluation completion (the reference uses 512)", intArg("--max-new-tokens", 1), 64)
    .option("--system <text>", "system message for direction generation and selection (e.g. the adversarial one)")
    .option("--eval-system <text>", "system message for the evaluation completions (default: none)")
    .option("--affine", "ACE interventions at the chosen layer (default, as the reference)")
    .option("--linear", "linear interventions: ablation at every layer, addition at the chosen layer")
    .option("--selection <method>", "whose direction is the result: cosmic or substring (both are scored)", "cosmic")
    .option("--kl-threshold <x>", "discard candidates with a larger KL score", floatArg("--kl-threshold"), 0.1)
    .option("--prune-layers <f>", "discard candidates in the last fraction of layers", floatArg("--prune-layers"), 0.2)
    .option("--low-layer-fraction <f>", "fraction of layers in L_low", floatArg("--low-layer-fraction"), 0.1)
    .option("--steer-toward-refusal", "weakly aligned models: L_low from the second half; sweep addition on harmful and harmless test prompts")
    .option("--alphas <list>", "addition coefficients for --steer-toward-refusal", "1,2,3")
    .option("--judge <name>", "refusal phrase list: jailbreakbench or extended", "jailbreakbench")
    .option("--refusal-phrases <list>", "phrases separated by | whose first tokens are the substring baseline's refusal tokens (default: the judge's)")
    .option("--schedule <s>", "scoring schedule: fast, or naive (the reference's full passes; for comparison)", "fast")
    .option("--skip-eval", "stop after selection");
}

engineOptions(runOptions(program.command("run")))
  .description("find the refusal direction: candidate directions, L_low, scores, selection, evaluation")
  .requiredOption("--model <dir>", "model folder")
  .requiredOption("--out <dir>", "run folder (resumable: finished stages are reused)")
  .action(async (o: RunFlags) => {
    const s = await runCommand(o);
    process.stdout.write(formatSummary(s, o.out) + "\n");
  });

export async function main(argv: string[]): Promise<number> {
  try {
    await program.parseAsync(argv);
    return 0;
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode === 0 ? 0 : 2;
    if (e instanceof CosmicError) {
      process.stderr.write(`cosmic: ${e.message.split("\n")[0]}\n`);
      return e.exitCode;
    }
    throw e;
  }
}
