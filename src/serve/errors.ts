/** Errors in OpenAI's shape: {"error": {"message", "type", "param", "code"}} with an HTTP status. */

const TYPES: Record<number, string> = {
  400: "invalid_request_error",
  401: "authentication_error",
  404: "not_found_error",
  405: "invalid_request_error",
  413: "invalid_request_error",
  429: "rate_limit_error",
  500: "server_error",
  503: "server_error",
};

export class ApiError extends Error {
  readonly status: number;
  readonly param: string | null;
  readonly code: string | null;

  constructor(status: number, message: string, opts: { param?: string; code?: string } = {}) {
    super(message);
    this.status = status;
    this.param = opts.param ?? null;
    this.code = opts.code ?? null;
  }

  body(): { error: { message: string; type: string; param: string | null; code: string | null } } {
    return {
      error: { message: this.message, type: TYPES[this.status] ?? "server_error", param: this.param, code: this.code },
    };
  }
}
