/** Small text helpers shared by the CLI tables and the report. */

/** A rate as "12.3 %", or "—" when there is none. */
export function pct(x: number | null | undefined): string {
  return x === undefined || x === null || Number.isNaN(x) ? "—" : `${(100 * x).toFixed(1)} %`;
}

/** Text for HTML and SVG: the five characters that would be markup. */
export function escapeXml(s: string): string {
  return s
    .replace(/&/g, "&amp;")
    .replace(/</g, "&lt;")
    .replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;")
    .replace(/'/g, "&#39;");
}
