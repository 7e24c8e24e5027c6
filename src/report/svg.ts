/** Small hand-written SVG charts: a line chart, a heatmap with marks, grouped bars. */
import { escapeXml } from "../util/format.js";

const esc = escapeXml;
const FONT = 'font-family="system-ui, sans-serif" font-size="11"';

export interface Series {
  name: string;
  color: string;
  points: [number, number][];
}

function ticks(min: number, max: number, n = 5): number[] {
  if (max === min) return [min];
  const step = (max - min) / n;
  return Array.from({ length: n + 1 }, (_, i) => min + i * step);
}

/** The opening <svg> tag of a plot and its centred title. */
function svgStart(id: string, W: number, H: number, title: string): string[] {
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" id="${id}" class="plot" viewBox="0 0 ${W} ${H}" width="${W}" ` +
      `height="${H}" ${FONT}>`,
    `<text x="${W / 2}" y="18" text-anchor="middle" font-size="13" font-weight="600">${esc(title)}</text>`,
  ];
}

function fmt(x: number): string {
  return Math.abs(x) >= 100 || Number.isInteger(x) ? String(Math.round(x)) : x.toFixed(2);
}

/** A line chart's plotting area: its size, margins and the data-to-pixel maps. */
interface Frame {
  W: number;
  H: number;
  L: number;
  R: number;
  T: number;
  B: number;
  sx: (x: number) => number;
  sy: (y: number) => number;
}

/** Grid lines and y ticks, x ticks, the axes and their labels. */
function lineAxes(f: Frame, xs: number[], y0: number, y1: number, xLabel: string, yLabel: string): string[] {
  const { W, H, L, R, T, B, sx, sy } = f;
  const parts: string[] = [];
  for (const t of ticks(y0, y1))
    parts.push(
      `<line x1="${L}" x2="${W - R}" y1="${sy(t)}" y2="${sy(t)}" stroke="#ddd"/><text x="${L - 6}" ` +
        `y="${sy(t) + 4}" text-anchor="end">${fmt(t)}</text>`,
    );
  const xt = [...new Set(xs)].sort((a, b) => a - b);
  const every = Math.max(1, Math.ceil(xt.length / 12));
  xt.forEach((t, i) => {
    if (i % every === 0) parts.push(`<text x="${sx(t)}" y="${H - B + 16}" text-anchor="middle">${fmt(t)}</text>`);
  });
  parts.push(
    `<line x1="${L}" x2="${W - R}" y1="${H - B}" y2="${H - B}" stroke="#333"/><line x1="${L}" x2="${L}" ` +
      `y1="${T}" y2="${H - B}" stroke="#333"/>`,
  );
  parts.push(`<text x="${(L + W - R) / 2}" y="${H - 8}" text-anchor="middle">${esc(xLabel)}</text>`);
  parts.push(
    `<text transform="translate(14 ${(T + H - B) / 2}) rotate(-90)" text-anchor="middle">${esc(yLabel)}</text>`,
  );
  return parts;
}

/** Each series as a polyline with hoverable points, and its legend entry. */
function lineSeries(f: Frame, series: Series[]): string[] {
  const { W, R, T, sx, sy } = f;
  const parts: string[] = [];
  series.forEach((s, i) => {
    const pts = s.points.map(([x, y]) => `${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join(" ");
    parts.push(`<polyline fill="none" stroke="${s.color}" stroke-width="2" points="${pts}"/>`);
    for (const [x, y] of s.points)
      parts.push(
        `<circle cx="${sx(x).toFixed(1)}" cy="${sy(y).toFixed(1)}" r="3" ` +
          `fill="${s.color}"><title>${esc(s.name)}: (${fmt(x)}, ${y.toPrecision(4)})</title></circle>`,
      );
    parts.push(
      `<rect x="${W - R + 10}" y="${T + i * 18}" width="12" height="3" fill="${s.color}"/><text ` +
        `x="${W - R + 28}" y="${T + i * 18 + 5}">${esc(s.name)}</text>`,
    );
  });
  return parts;
}

export function lineChart(chart: {
  title: string;
  xLabel: string;
  yLabel: string;
  series: Series[];
  marks?: number[];
  markLabel?: string;
  yMin?: number;
  yMax?: number;
  id: string;
}): string {
  const [W, H, L, R, T, B] = [560, 300, 60, 140, 34, 44];
  const xs = chart.series.flatMap((s) => s.points.map((p) => p[0]));
  const ys = chart.series.flatMap((s) => s.points.map((p) => p[1]));
  const x0 = Math.min(...xs),
    x1 = Math.max(...xs);
  let y0 = chart.yMin ?? Math.min(...ys),
    y1 = chart.yMax ?? Math.max(...ys);
  if (y0 === y1) {
    y0 -= 1;
    y1 += 1;
  }
  const sx = (x: number) => L + ((x - x0) / Math.max(1e-12, x1 - x0)) * (W - L - R);
  const sy = (y: number) => T + (1 - (y - y0) / (y1 - y0)) * (H - T - B);
  const frame: Frame = { W, H, L, R, T, B, sx, sy };
  const parts: string[] = [];
  parts.push(...svgStart(chart.id, W, H, chart.title));
  for (const m of chart.marks ?? [])
    parts.push(
      `<rect x="${sx(m) - 4}" y="${T}" width="8" height="${H - T - B}" fill="#f3c969" ` +
        `opacity="0.5"><title>${esc(chart.markLabel ?? "")} ${m}</title></rect>`,
    );
  parts.push(...lineAxes(frame, xs, y0, y1, chart.xLabel, chart.yLabel), ...lineSeries(frame, chart.series));
  if (chart.marks?.length)
    parts.push(
      `<rect x="${W - R + 10}" y="${T + chart.series.length * 18 - 4}" width="12" height="10" fill="#f3c969" ` +
        `opacity="0.5"/><text x="${W - R + 28}" y="${T + chart.series.length * 18 + 5}">` +
        `${esc(chart.markLabel ?? "")}</text>`,
    );
  parts.push("</svg>");
  return parts.join("");
}

function color(v: number, lo: number, hi: number): string {
  const t = hi === lo ? 0.5 : Math.min(1, Math.max(0, (v - lo) / (hi - lo)));
  // white → deep blue
  const r = Math.round(247 - t * (247 - 8));
  const g = Math.round(251 - t * (251 - 69));
  const b = Math.round(255 - t * (255 - 148));
  return `rgb(${r},${g},${b})`;
}

/** The legend's height (colour bar, its labels, the filtered and selected keys). */
const LEGEND_H = 196;

/** The legend's key for cells with no score (drawn only when there are some), below the others. */
const MISSING_KEY_H = 24;

/** The heatmap's legend at (lx, T): the colour scale with its min and max, which way is better, the keys. */
function heatmapLegend(
  lx: number,
  T: number,
  lo: number,
  hi: number,
  better?: "higher" | "lower",
  missing?: string,
): string[] {
  const parts: string[] = [];
  const exact = (x: number) => (Number.isFinite(x) ? x.toPrecision(3) : "—");
  parts.push(`<text x="${lx}" y="${T + 4}">scale</text>`);
  for (let k = 0; k <= 10; k++)
    parts.push(
      `<rect x="${lx}" y="${T + 12 + (10 - k) * 10}" width="14" height="10" ` +
        `fill="${color(lo + ((hi - lo) * k) / 10, lo, hi)}"/>`,
    );
  parts.push(
    `<text x="${lx + 18}" y="${T + 21}">max ${exact(hi)}</text><text x="${lx + 18}" y="${T + 121}">min ` +
      `${exact(lo)}</text>`,
  );
  if (better) parts.push(`<text x="${lx}" y="${T + 142}">${better} is better</text>`);
  parts.push(
    `<path d="M${lx},${T + 154}l10,10M${lx + 10},${T + 154}l-10,10" stroke="#c44"/><text x="${lx + 14}" ` +
      `y="${T + 163}">filtered</text>`,
  );
  parts.push(
    `<circle cx="${lx + 5}" cy="${T + 182}" r="6" fill="none" stroke="#e4572e" stroke-width="2"/><text ` +
      `x="${lx + 14}" y="${T + 186}">selected</text>`,
  );
  if (missing)
    parts.push(
      `<rect x="${lx}" y="${T + 198}" width="10" height="10" fill="#eee" stroke="#bbb"/><text x="${lx + 14}" ` +
        `y="${T + 207}">${esc(missing)}</text>`,
    );
  return parts;
}

export function heatmap(chart: {
  title: string;
  rows: number[];
  cols: number[];
  /** null: no value (JSON's NaN, or a score the lazy schedule did not compute: `missing` says which) */
  value: (r: number, c: number) => number | null;
  missing?: string;
  filtered: (r: number, c: number) => boolean;
  selected: [number, number] | null;
  id: string;
  rowLabel: string;
  colLabel: string;
  better?: "higher" | "lower";
}): string {
  // Cells fill a page-wide figure (about 1,000 px); the legend sits inside the viewBox.
  const L = 60,
    T = 34,
    B = 44,
    R = 130;
  const cell = Math.max(10, Math.min(64, Math.floor((1000 - L - R) / chart.cols.length)));
  const W = L + cell * chart.cols.length + R;
  const all = chart.rows.flatMap((r) => chart.cols.map((c) => chart.value(r, c)));
  // Cells with no score (null) under a `missing` label: grey, uncrossed (nothing was judged), keyed in the legend.
  const missing = chart.missing && all.some((v) => v === null) ? chart.missing : undefined;
  const H = Math.max(T + cell * chart.rows.length + B, T + LEGEND_H + (missing ? MISSING_KEY_H : 0) + 8);
  const vals = all.filter((v): v is number => v !== null && Number.isFinite(v));
  const lo = Math.min(...vals),
    hi = Math.max(...vals);
  const parts: string[] = [];
  parts.push(...svgStart(chart.id, W, H, chart.title));
  chart.rows.forEach((r, i) => {
    parts.push(`<text x="${L - 6}" y="${T + i * cell + cell / 2 + 4}" text-anchor="end">${r}</text>`);
    chart.cols.forEach((c, j) => {
      const v = chart.value(r, c);
      const shown = v !== null && Number.isFinite(v);
      const x = L + j * cell,
        y = T + i * cell;
      parts.push(
        `<rect x="${x}" y="${y}" width="${cell}" height="${cell}" ` +
          `fill="${shown ? color(v, lo, hi) : "#eee"}" stroke="#fff"><title>position ${r}, layer ` +
          `${c}: ${shown ? v.toPrecision(4) : v === null && missing ? missing : "NaN"}` +
          `${chart.filtered(r, c) && !(v === null && missing) ? " (filtered out)" : ""}</title></rect>`,
      );
      if (chart.filtered(r, c) && !(v === null && missing))
        parts.push(
          `<path d="M${x + 2},${y + 2}L${x + cell - 2},${y + cell - 2}` +
            `M${x + cell - 2},${y + 2}L${x + 2},${y + cell - 2}" stroke="#c44" stroke-width="1" opacity="0.6"/>`,
        );
    });
  });
  const every = Math.max(1, Math.ceil(chart.cols.length / 16));
  chart.cols.forEach((c, j) => {
    if (j % every === 0)
      parts.push(
        `<text x="${L + j * cell + cell / 2}" y="${T + chart.rows.length * cell + 14}" ` +
          `text-anchor="middle">${c}</text>`,
      );
  });
  if (chart.selected) {
    const i = chart.rows.indexOf(chart.selected[0]),
      j = chart.cols.indexOf(chart.selected[1]);
    if (i >= 0 && j >= 0)
      parts.push(
        `<circle class="selected" cx="${L + j * cell + cell / 2}" cy="${T + i * cell + cell / 2}" ` +
          `r="${cell / 2 + 2}" fill="none" stroke="#e4572e" stroke-width="3"><title>selected</title></circle>`,
      );
  }
  parts.push(
    `<text x="${L + (cell * chart.cols.length) / 2}" y="${H - 10}" text-anchor="middle">${esc(chart.colLabel)}</text>`,
  );
  parts.push(
    `<text transform="translate(14 ${T + (cell * chart.rows.length) / 2}) rotate(-90)" ` +
      `text-anchor="middle">${esc(chart.rowLabel)}</text>`,
  );
  parts.push(...heatmapLegend(W - R + 16, T, lo, hi, chart.better, missing));
  parts.push("</svg>");
  return parts.join("");
}

export function barChart(chart: {
  title: string;
  groups: string[];
  series: { name: string; color: string; values: (number | null)[] }[];
  yLabel: string;
  id: string;
}): string {
  const W = 560,
    H = 300,
    L = 60,
    R = 150,
    T = 34,
    B = 60;
  const gw = (W - L - R) / chart.groups.length;
  const bw = (gw * 0.8) / chart.series.length;
  const sy = (v: number) => T + (1 - v) * (H - T - B);
  const parts: string[] = [];
  parts.push(...svgStart(chart.id, W, H, chart.title));
  for (const t of [0, 0.25, 0.5, 0.75, 1])
    parts.push(
      `<line x1="${L}" x2="${W - R}" y1="${sy(t)}" y2="${sy(t)}" stroke="#ddd"/><text x="${L - 6}" ` +
        `y="${sy(t) + 4}" text-anchor="end">${t * 100}%</text>`,
    );
  chart.groups.forEach((g, i) => {
    parts.push(`<text x="${L + i * gw + gw / 2}" y="${H - B + 16}" text-anchor="middle">${esc(g)}</text>`);
    chart.series.forEach((s, k) => {
      const v = s.values[i];
      if (v === null) return;
      const x = L + i * gw + gw * 0.1 + k * bw;
      parts.push(
        `<rect x="${x.toFixed(1)}" y="${sy(v).toFixed(1)}" width="${(bw - 2).toFixed(1)}" ` +
          `height="${(sy(0) - sy(v)).toFixed(1)}" fill="${s.color}"><title>${esc(s.name)} — ${esc(g)}: ` +
          `${(100 * v).toFixed(1)}%</title></rect>`,
      );
      parts.push(
        `<text x="${(x + bw / 2).toFixed(1)}" y="${(sy(v) - 3).toFixed(1)}" text-anchor="middle" ` +
          `font-size="9">${(100 * v).toFixed(0)}</text>`,
      );
    });
  });
  parts.push(`<line x1="${L}" x2="${W - R}" y1="${sy(0)}" y2="${sy(0)}" stroke="#333"/>`);
  parts.push(
    `<text transform="translate(14 ${(T + H - B) / 2}) rotate(-90)" text-anchor="middle">${esc(chart.yLabel)}</text>`,
  );
  chart.series.forEach((s, i) =>
    parts.push(
      `<rect x="${W - R + 10}" y="${T + i * 18}" width="12" height="10" fill="${s.color}"/><text ` +
        `x="${W - R + 28}" y="${T + i * 18 + 9}">${esc(s.name)}</text>`,
    ),
  );
  parts.push("</svg>");
  return parts.join("");
}
