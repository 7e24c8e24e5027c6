/**
 * The HTTP side of `cosmic serve`: OpenAI's endpoints over node:http, each request one row of
 * the continuous batch. Streaming replies are server-sent events ending in `data: [DONE]`.
 */
import http from "node:http";
import { AddressInfo } from "node:net";
import { CosmicError } from "../errors.js";
import { Engine } from "../engine/engine.js";
import { ModelFolder } from "../model/folder.js";
import { jsonDepthProblem } from "../formats/json-errors.js";
import { ContinuousBatcher, FinishReason, QueueFullError, RowStats } from "./batcher.js";
import { ApiError } from "./errors.js";
import { Endpoint, GenerationRequest, parseRequest } from "./requests.js";
import { Steering } from "./steering.js";
import { TextStream } from "./text-stream.js";
import { ReplyShapes } from "./replies.js";

export interface ServeOptions {
  host: string;
  /** 0 = any free port */
  port: number;
  apiKey?: string;
  maxBatch: number;
  maxQueue: number;
  /** the context a request may use (prompt + max_tokens), at most the model's */
  ctx: number;
  maxBodyBytes?: number;
  /** one line per request, and the server's own messages */
  log?: (line: string) => void;
}

export const MAX_BODY_BYTES = 1_000_000;

export interface RunningServer {
  readonly url: string;
  readonly port: number;
  readonly batcher: ContinuousBatcher;
  /** Stop taking requests, let the running ones finish, then close. */
  close(): Promise<void>;
}

type Res = http.ServerResponse;

function sendJson(res: Res, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
  res.end(text);
}

function sendError(res: Res, e: ApiError): void {
  if (res.headersSent) {
    if (!res.writableEnded) {
      res.write(`data: ${JSON.stringify(e.body())}\n\n`);
      res.end();
    }
    return;
  }
  sendJson(res, e.status, e.body());
}

/** The body as JSON: at most `limit` bytes (413), valid JSON (400), nesting within bounds. */
function readBody(req: http.IncomingMessage, limit: number): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers["content-length"]);
    if (Number.isFinite(declared) && declared > limit)
      return reject(new ApiError(413, `the body has ${declared} bytes; the limit is ${limit}`));
    const parts: Buffer[] = [];
    let size = 0;
    req.on("data", (c: Buffer) => {
      size += c.length;
      if (size > limit) {
        reject(new ApiError(413, `the body is over the limit of ${limit} bytes`));
        req.destroy();
      } else parts.push(c);
    });
    req.on("error", reject);
    req.on("end", () => {
      const text = Buffer.concat(parts).toString("utf8");
      const deep = jsonDepthProblem(text);
      if (deep) return reject(new ApiError(400, `the body is not accepted: ${deep}`));
      try {
        resolve(JSON.parse(text));
      } catch (e) {
        reject(new ApiError(400, `the body is not valid JSON (${(e as Error).message})`));
      }
    });
  });
}

/** What the request handlers share. */
interface ServerState {
  batcher: ContinuousBatcher;
  folder: ModelFolder;
  steering: Steering;
  opts: ServeOptions;
  eos: Set<number>;
  created: number;
  draining: boolean;
}

/** Run one parsed request as a row of the batch, streaming or answering when it ends. */
function respond(st: ServerState, g: GenerationRequest, res: Res): void {
  const shapes = new ReplyShapes(g);
  const text = new TextStream(st.folder.tokenizer, g.stop);
  const event = (data: unknown) => res.write(`data: ${JSON.stringify(data)}\n\n`);
  let finished = false;
  const t0 = performance.now();
  const onEnd = (reason: FinishReason, stats: RowStats) => {
    finished = true;
    if (reason === "cancelled") return void res.destroy();
    const rest = text.finish();
    if (g.stream) {
      if (rest) event(shapes.piece(rest));
      shapes.closing(reason, stats).forEach(event);
      res.end("data: [DONE]\n\n");
    } else sendJson(res, 200, shapes.whole(text.content, reason, stats));
    const seconds = ((performance.now() - t0) / 1000).toFixed(2);
    st.opts.log?.(
      `${g.endpoint} ${g.model}` +
        (g.steering ? ` steering ${g.steering.intervention}:${g.steering.direction}` : "") +
        `: ${stats.promptTokens} + ${stats.completionTokens} tokens in ${seconds} s (${reason})`,
    );
  };
  const handle = st.batcher.submit({
    prompt: g.prompt,
    intervention: g.intervention,
    maxTokens: g.maxTokens,
    sampling: { temperature: g.temperature, topP: g.topP },
    seed: g.seed,
    stopTokens: g.ignoreEos ? new Set() : st.eos,
    onToken: (t) => {
      const { delta, stopped } = text.push(t);
      if (g.stream && delta) event(shapes.piece(delta));
      return stopped;
    },
    onEnd,
    onError: (e: Error) => {
      finished = true;
      st.opts.log?.(`error: ${e.message.split("\n")[0]}`);
      sendError(res, new ApiError(500, e.message.split("\n")[0]));
    },
  });
  // Headers only once the batcher took the request (a full queue is still a 429).
  if (g.stream) {
    res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache", connection: "keep-alive" });
    if (g.endpoint === "chat") event(shapes.opening());
  }
  // A client that goes away frees its row at the next step.
  res.on("close", () => {
    if (!finished) handle.cancel();
  });
}

async function route(st: ServerState, req: http.IncomingMessage, res: Res): Promise<void> {
  const url = (req.url ?? "/").split("?")[0].replace(/\/+$/, "") || "/";
  const method = req.method ?? "GET";
  const only = (m: string) => {
    if (method !== m) throw new ApiError(405, `${url} takes ${m}, not ${method}`);
  };
  if (url === "/health") {
    only("GET");
    const { running, waiting } = st.batcher;
    return sendJson(res, st.draining ? 503 : 200, { status: st.draining ? "draining" : "ok", running, waiting });
  }
  if (st.opts.apiKey && req.headers.authorization !== `Bearer ${st.opts.apiKey}`)
    throw new ApiError(401, "a valid API key is needed: send the header Authorization: Bearer KEY", {
      code: "invalid_api_key",
    });
  if (url === "/v1/models") {
    only("GET");
    const data = st.steering.modelIds().map((id) => ({ id, object: "model", created: st.created, owned_by: "cosmic" }));
    return sendJson(res, 200, { object: "list", data });
  }
  const endpoint: Endpoint | null =
    url === "/v1/chat/completions" ? "chat" : url === "/v1/completions" ? "completion" : null;
  if (!endpoint) throw new ApiError(404, `no endpoint ${method} ${url}`, { code: "unknown_url" });
  only("POST");
  if (st.draining) throw new ApiError(503, "the server is shutting down");
  const body = await readBody(req, st.opts.maxBodyBytes ?? MAX_BODY_BYTES);
  respond(st, parseRequest(endpoint, body, st.folder, st.steering, st.opts.ctx), res);
}

/** Any failure of a request as an OpenAI error object. */
function failed(st: ServerState, res: Res, e: unknown): void {
  if (e instanceof ApiError) return sendError(res, e);
  if (e instanceof QueueFullError)
    return sendError(
      res,
      new ApiError(429, `${st.batcher.waiting} requests are waiting (--max-queue ${st.opts.maxQueue}); retry later`),
    );
  if (e instanceof CosmicError) return sendError(res, new ApiError(400, e.message.split("\n")[0]));
  st.opts.log?.(`error: ${String((e as Error)?.stack ?? e)}`);
  sendError(res, new ApiError(500, "internal error"));
}

function listen(server: http.Server, host: string, port: number): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    server.once("error", (e: NodeJS.ErrnoException) =>
      reject(
        new CosmicError(
          e.code === "EADDRINUSE"
            ? `${host}:${port} is in use (choose another --port)`
            : `cannot listen on ${host}:${port} (${e.code ?? e.message})`,
        ),
      ),
    );
    server.listen(port, host, () => resolve());
  });
}

export async function startServer(
  engine: Engine,
  folder: ModelFolder,
  steering: Steering,
  opts: ServeOptions,
): Promise<RunningServer> {
  if (opts.ctx > engine.spec.maxPositionEmbeddings || opts.ctx < 2)
    throw new CosmicError(`--ctx must be between 2 and the model's context of ${engine.spec.maxPositionEmbeddings}`);
  const st: ServerState = {
    batcher: new ContinuousBatcher(engine, { maxBatch: opts.maxBatch, maxQueue: opts.maxQueue }),
    folder,
    steering,
    opts,
    eos: new Set(folder.eosTokenIds),
    created: Math.floor(Date.now() / 1000),
    draining: false,
  };
  const server = http.createServer((req, res) => void route(st, req, res).catch((e: unknown) => failed(st, res, e)));
  await listen(server, opts.host, opts.port);
  const port = (server.address() as AddressInfo).port;
  const host = opts.host.includes(":") ? `[${opts.host}]` : opts.host;
  return {
    url: `http://${host}:${port}`,
    port,
    batcher: st.batcher,
    close: async () => {
      st.draining = true;
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      await st.batcher.idle();
      server.closeIdleConnections();
      await closed;
    },
  };
}
