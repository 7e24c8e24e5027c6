import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { Browser, chromium, Page } from "playwright-core";
import { runCommand } from "../src/cli/run.js";
import { writeReport } from "../src/report/report.js";
import { FIXTURES, scratchDir, SPLITS } from "./helpers.js";

/** Chromium from $CHROMIUM, else the first chromium / chromium-browser / google-chrome on PATH. */
function findChromium(): string | null {
  if (process.env.CHROMIUM) return fs.existsSync(process.env.CHROMIUM) ? process.env.CHROMIUM : null;
  for (const dir of (process.env.PATH ?? "").split(path.delimiter)) {
    for (const name of ["chromium", "chromium-browser", "google-chrome"]) {
      const f = path.join(dir, name);
      if (dir && fs.existsSync(f)) return f;
    }
  }
  return null;
}
const CHROMIUM = findChromium();

/** A small steer-toward-refusal run on the llama fixture (so the α sweep is plotted too). */
async function sweepRun(): Promise<string> {
  const out = scratchDir("cosmic-report-");
  await runCommand({
    model: path.join(FIXTURES, "llama"),
    out,
    data: SPLITS,
    nTrain: 6,
    nVal: 4,
    nTest: 3,
    seed: 1,
    maxNewTokens: 3,
    batchSize: 8,
    klThreshold: 10,
    pruneLayers: 0.2,
    lowLayerFraction: 0.1,
    selection: "cosmic",
    alphas: "1,2",
    judge: "jailbreakbench",
    schedule: "fast",
    device: "cpu",
    quiet: true,
    steerTowardRefusal: true,
  });
  return out;
}

function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM!,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
}

/** Each plot's rendered size and how many shapes it draws. */
function plotBoxes(page: Page): Promise<{ id: string; w: number; h: number; shapes: number }[]> {
  return page.$$eval("svg.plot", (els) =>
    els.map((e) => {
      const b = e.getBoundingClientRect();
      return { id: e.id, w: b.width, h: b.height, shapes: e.querySelectorAll("rect,polyline,circle,path").length };
    }),
  );
}

/** Text and shapes drawn outside their plot (legends and colour-bar labels included). */
function clippedElements(page: Page): Promise<string[]> {
  return page.$$eval("svg.plot", (els) =>
    els.flatMap((svg) => {
      const o = svg.getBoundingClientRect();
      return [...svg.querySelectorAll("text,rect,circle")]
        .filter((t) => {
          const b = t.getBoundingClientRect();
          return (
            b.width > 0 &&
            (b.left < o.left - 1 || b.right > o.right + 1 || b.top < o.top - 1 || b.bottom > o.bottom + 1)
          );
        })
        .map((t) => `${svg.id}: ${t.textContent || t.tagName}`);
    }),
  );
}

test(
  "the report renders every plot in headless Chromium with no console errors and no network",
  { skip: CHROMIUM ? false : "no Chromium on PATH or in $CHROMIUM (.ci/run installs Debian's chromium)" },
  async () => {
    const out = await sweepRun();
    const r = writeReport(out);
    assert.ok(r.svgs.length >= 6, `${r.svgs.length} plots`);
    for (const f of r.svgs) assert.match(fs.readFileSync(f, "utf8"), /^<\?xml[^]*<svg[^]*<\/svg>\s*$/);
    const html = fs.readFileSync(r.html, "utf8");
    assert.doesNotMatch(
      html,
      /<script|(src|href)=["']?https?:|url\(/,
      "self-contained: no scripts, no remote resources",
    );
    const browser = await launchChromium();
    try {
      const page = await browser.newPage();
      const errors: string[] = [];
      const requests: string[] = [];
      page.on("console", (m) => {
        if (m.type() === "error") errors.push(m.text());
      });
      page.on("pageerror", (e) => errors.push(String(e)));
      page.on("request", (q) => {
        if (!q.url().startsWith("file://")) requests.push(q.url());
      });
      await page.goto(`file://${r.html}`);
      const boxes = await plotBoxes(page);
      assert.equal(boxes.length, r.svgs.length);
      for (const b of boxes) {
        assert.ok(b.w > 100 && b.h > 100, `${b.id} rendered at ${b.w}×${b.h}`);
        assert.ok(b.shapes > 3, `${b.id} has ${b.shapes} shapes`);
      }
      assert.ok(
        boxes.some((b) => b.id === "alpha-sweep"),
        "α sweep plotted",
      );
      const clipped = await clippedElements(page);
      assert.deepEqual(clipped, []);
      assert.doesNotMatch(html, /<title>[^<]*\/[^<]*<\/title>|<h1>[^<]*\/tmp/, "no absolute paths in titles");
      assert.equal(
        await page.locator("circle.selected").count(),
        3,
        "the selected candidate is circled on the three COSMIC heatmaps",
      );
      assert.deepEqual(errors, []);
      assert.deepEqual(requests, []);
    } finally {
      await browser.close();
    }
  },
);

test(
  "heatmaps keep their legend inside the viewBox, with a labelled min/max scale and " + "which way is better",
  async () => {
    const { heatmap } = await import("../src/report/svg.js");
    for (const rows of [[-1], [-2, -1], [-5, -4, -3, -2, -1]]) {
      const svg = heatmap({
        id: "h",
        title: "t",
        rows,
        cols: [0, 1, 2, 3, 4, 5, 6, 7],
        rowLabel: "EOI position",
        colLabel: "layer",
        value: (r, c) => r * 10 + c + 0.5,
        filtered: (r, c) => c === 0,
        selected: [-1, 4],
        better: "higher",
      });
      const [, w, h] = /viewBox="0 0 (\d+(?:\.\d+)?) (\d+(?:\.\d+)?)"/.exec(svg)!.map(Number);
      for (const m of svg.matchAll(/<(?:text|rect|circle)[^>]*?\s(?:y|cy)="(-?[\d.]+)"/g))
        assert.ok(Number(m[1]) <= h - 2, `element at y=${m[1]} outside height ${h} (${rows.length} rows)`);
      for (const m of svg.matchAll(/<(?:text|rect)[^>]*?\sx="(-?[\d.]+)"/g))
        assert.ok(Number(m[1]) < w - 20, `element at x=${m[1]} outside width ${w}`);
      assert.match(svg, /max [-\d.]+/);
      assert.match(svg, /min [-\d.]+/);
      assert.match(svg, /higher is better/);
    }
  },
);
