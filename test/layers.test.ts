import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { ROOT } from "./helpers.js";

/** The layers of src/, lowest first (README, "Layout"): a module imports only from its own layer or lower. */
const LAYERS = [
  "util",
  "errors",
  "formats",
  "tokenize",
  "data",
  "model",
  "engine",
  "cosmic",
  "eval",
  "export",
  "serve",
  "report",
  "organism",
  "cli",
  "index",
];

function sources(dir: string): string[] {
  return fs
    .readdirSync(dir, { withFileTypes: true })
    .flatMap((e) =>
      e.isDirectory() ? sources(path.join(dir, e.name)) : e.name.endsWith(".ts") ? [path.join(dir, e.name)] : [],
    );
}

test("imports in src/ flow downward only (eval above cosmic, cli on top)", () => {
  const src = path.join(ROOT, "src");
  const layer = (file: string) => LAYERS.indexOf(path.relative(src, file).split(path.sep)[0].replace(/\.ts$/, ""));
  const upward: string[] = [];
  const files = sources(src);
  for (const f of files) {
    assert.ok(layer(f) >= 0, `${path.relative(src, f)} is in no layer`);
    for (const m of fs.readFileSync(f, "utf8").matchAll(/from "(\.{1,2}\/[^"]+)"/g)) {
      const target = path.resolve(path.dirname(f), m[1]).replace(/\.js$/, ".ts");
      if (layer(target) > layer(f)) upward.push(`${path.relative(src, f)} → ${path.relative(src, target)}`);
    }
  }
  assert.ok(files.length > 50);
  assert.deepEqual(upward, []);
});
