import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { fileHashes, FIXTURES, ROOT, scratchDir, SPLITS } from "./helpers.js";
import { writeDirection } from "../src/formats/direction.js";

const BIN = path.join(ROOT, "bin", "cosmic.js");

function cosmic(args: string[], cwd: string): void {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: "utf8", cwd });
  assert.equal(r.status, 0, r.stderr);
}

/** Every file under `dir` but dot files and the wall-clock times (timings.json, stage_timings.json), with its sha256. */
const contents = (dir: string) =>
  fileHashes(dir, (name) => name.startsWith(".") || name === "timings.json" || name === "stage_timings.json");

/** A fresh folder holding a copy of the qwen2 fixture, a prompts file and a direction file. */
function newHome(where: string): string {
  const home = scratchDir(`cosmic-repro-${where}-`);
  fs.mkdirSync(path.join(home, "model"));
  for (const f of fs.readdirSync(path.join(FIXTURES, "qwen2"))) {
    if (f !== "expected") fs.copyFileSync(path.join(FIXTURES, "qwen2", f), path.join(home, "model", f));
  }
  fs.copyFileSync(path.join(SPLITS, "harmful_val.json"), path.join(home, "prompts.json"));
  const d = Float32Array.from({ length: 64 }, (_, i) => Math.sin(i + 1));
  writeDirection(path.join(home, "direction.safetensors"), d, null, {
    layer: "2",
    mode: "linear",
    model_type: "qwen2",
    num_layers: "4",
  });
  return home;
}

/** Every artifact-writing command, run inside `home` with relative paths (the model's given absolute once). */
function writeArtifacts(home: string): void {
  const words = (line: string) => line.split(" ");
  cosmic(
    [
      ...words("run --model"),
      path.join(home, "model"),
      ...words(`--data ${SPLITS} --n-train 8 --n-val 6 --n-test 4 --max-new-tokens 4 --out run --quiet`),
    ],
    home,
  );
  cosmic(words("report run"), home);
  cosmic(words("capture --model model --prompts prompts.json --limit 3 --out out/acts.safetensors --quiet"), home);
  cosmic(
    words(
      "generate --model model --prompts prompts.json --limit 3 --max-new-tokens 4 " +
        "--direction direction.safetensors --out out/gens.json --quiet",
    ),
    home,
  );
  cosmic(words("export abliterate --model model --direction direction.safetensors --out out/abliterated"), home);
  cosmic(words("export control-vector --direction direction.safetensors --out out/cv.gguf"), home);
}

// Two machines (two different folders) running the same commands write the same bytes: no
// absolute paths or wall-clock times inside artifacts (those are in timings.json and stage_timings.json).
test("identical commands in two folders write identical artifacts, timings aside", () => {
  const results: Record<string, string>[] = [];
  for (const where of ["a", "b"]) {
    const home = newHome(where);
    writeArtifacts(home);
    results.push({
      ...contents(path.join(home, "run")),
      ...Object.fromEntries(Object.entries(contents(path.join(home, "out"))).map(([k, v]) => [`out/${k}`, v])),
    });
  }
  assert.ok(Object.keys(results[0]).length > 20);
  assert.deepEqual(results[0], results[1]);
});
