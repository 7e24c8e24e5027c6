/** Turn a JSON syntax error into one line with a line and column (JSON.parse gives neither on Node 20). */
import { parse, printParseErrorCode, ParseError } from "jsonc-parser";

export function describeJsonError(text: string): string {
  const errors: ParseError[] = [];
  parse(text, errors, { allowTrailingComma: false, disallowComments: true });
  const e = errors[0];
  if (!e) return "invalid JSON";
  let line = 1;
  let col = 1;
  for (let i = 0; i < e.offset && i < text.length; i++) {
    if (text.charCodeAt(i) === 10) {
      line++;
      col = 1;
    } else col++;
  }
  return `line ${line}, column ${col}: invalid JSON (${printParseErrorCode(e.error)})`;
}

/** Deepest nesting of arrays and objects cosmic accepts in any JSON input. */
export const MAX_JSON_DEPTH = 256;

/**
 * The nesting depth of a JSON text (brackets outside strings), counted without parsing, so
 * that a hostile file cannot overflow the stack of whatever walks the parsed value.
 * Returns a one-line problem, or null.
 */
export function jsonDepthProblem(text: string, max = MAX_JSON_DEPTH): string | null {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 92)
        i++; // backslash: skip the escaped character
      else if (c === 34) inString = false;
    } else if (c === 34) inString = true;
    else if (c === 91 || c === 123) {
      if (++depth > max) return `JSON nested deeper than ${max} levels (at character ${i})`;
    } else if (c === 93 || c === 125) depth--;
  }
  return null;
}
