// Token ids of a cosmic run's sampled prompts, rendered with the model's own chat template by
// cosmic's tokenizer, for check.py (so both sides see exactly the same inputs).
// usage: node tools/reference-check/token_ids.mjs MODEL_DIR RUN_DIR OUT.json
import fs from "node:fs";
import { ModelFolder } from "../../dist/src/model/folder.js";

const [model, run, out] = process.argv.slice(2);
if (!out) {
  process.stderr.write("usage: node tools/reference-check/token_ids.mjs MODEL_DIR RUN_DIR OUT.json\n");
  process.exit(2);
}
const folder = ModelFolder.open(model);
const prompts = JSON.parse(fs.readFileSync(`${run}/prompts.json`, "utf8"));
const system = prompts.system ?? undefined;
const res = { system: prompts.system, eoi: folder.tokenizer.eoiTokens(system).ids };
for (const k of ["harmful_train", "harmless_train", "harmful_val", "harmless_val"]) {
  res[k] = prompts[k].map((r) => ({ instruction: r.instruction, ids: folder.tokenizer.encode(folder.tokenizer.formatPrompt(r.instruction, system)) }));
}
fs.writeFileSync(out, JSON.stringify(res));
