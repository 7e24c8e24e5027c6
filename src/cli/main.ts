/** The `cosmic` command line: thin wrappers that parse flags and call the library. */
import { Command, CommanderError, Option } from "commander";
import { CosmicError } from "../errors.js";
import { deviceArg, floatArg, intArg } from "./common.js";
import { formatInspect, inspectModel } from "./inspect.js";
import { captureCommand, generateCommand } from "./run-engine.js";

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
