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
    if (text.charCodeAt(i) === 10) { line++; col = 1; } else col++;
  }
  return `line ${line}, column ${col}: invalid JSON (${printParseErrorCode(e.error)})`;
}
