/**
 * A mistake in the user's input (a file, a flag). The CLI prints its message on one line and
 * exits with `exitCode`; anything else that escapes is a bug and keeps its stack trace.
 */
export class CosmicError extends Error {
  readonly exitCode: number;
  constructor(message: string, exitCode = 2) {
    super(message);
    this.name = "CosmicError";
    this.exitCode = exitCode;
  }
}

/** An error about one file: the message always starts with the file's path. */
export function fileError(path: string, what: string): CosmicError {
  return new CosmicError(`${path}: ${what}`);
}
