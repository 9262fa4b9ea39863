// HTTP(S) requests over Node's own http and https modules, for the Kubernetes and registry
// clients. undici did this before; loaded and with one connection made it added about 32 MiB
// to a small process's resident memory (its module graph and the llhttp WebAssembly), where
// node:http, which Node has loaded anyway, adds about 9 (docs/adr/0007-http-transport.md).
import http from "./node-http.ts";
import https from "node:https";
import type { Agent, IncomingHttpHeaders, IncomingMessage } from "node:http";

export type { IncomingHttpHeaders };

export interface AgentOptions {
  /** CA certificates to trust (PEM); the system's when absent. */
  ca?: Buffer | string;
  /** Client certificate and key (PEM). */
  cert?: Buffer | string;
  key?: Buffer | string;
  /** The name the server's certificate is checked against, when it differs from the URL's host. */
  servername?: string;
  rejectUnauthorized?: boolean;
  /** Connections per host; unlimited when absent. */
  maxSockets?: number;
  /** How long an idle kept-alive connection stays open. */
  keepAliveMs?: number;
}

/** A pool of kept-alive connections, one per scheme, created on first use. */
export class HttpAgent {
  private plain?: Agent;
  private secure?: https.Agent;
  private readonly opts: AgentOptions;

  constructor(opts: AgentOptions = {}) {
    this.opts = opts;
  }

  agentFor(protocol: string): Agent {
    const o = this.opts;
    // The agent's `timeout` is every socket's idle timeout, but on it the agent closes only a free
    // socket; one carrying a request (a quiet watch) is left alone.
    const common = { keepAlive: true, ...(o.maxSockets ? { maxSockets: o.maxSockets } : {}), ...(o.keepAliveMs ? { timeout: o.keepAliveMs } : {}) };
    if (protocol === "https:") {
      return (this.secure ??= new https.Agent({
        ...common,
        ...(o.ca !== undefined ? { ca: o.ca } : {}),
        ...(o.cert !== undefined ? { cert: o.cert } : {}),
        ...(o.key !== undefined ? { key: o.key } : {}),
        ...(o.servername !== undefined ? { servername: o.servername } : {}),
        rejectUnauthorized: o.rejectUnauthorized ?? true,
      }));
    }
    return (this.plain ??= new http.Agent(common));
  }

  /**
   * Closes the idle connections; one in use (a watch, say) is closed when its request ends,
   * not cut off. Agent.destroy() would cut them off.
   */
  async close(): Promise<void> {
    for (const agent of [this.plain, this.secure]) {
      if (!agent) continue;
      // With keepAlive off, the agent destroys each socket its request frees.
      (agent as Agent & { keepAlive: boolean }).keepAlive = false;
      for (const sockets of Object.values(agent.freeSockets)) for (const s of sockets ?? []) s.destroy();
    }
  }
}

/** A response body: read once, as text, as bytes, chunk by chunk, or thrown away. */
export interface ResponseBody extends AsyncIterable<Buffer> {
  text(): Promise<string>;
  bytes(): Promise<Buffer>;
  /** Reads the rest and drops it, so the connection can be used again. */
  dump(): Promise<void>;
  /** Drops the connection without reading the rest. */
  destroy(): void;
}

export interface HttpResponse {
  statusCode: number;
  headers: IncomingHttpHeaders;
  body: ResponseBody;
}

export interface RequestOptions {
  method: string;
  headers?: Record<string, string>;
  body?: string | Buffer | null;
  agent: HttpAgent;
  signal?: AbortSignal;
  /** Time allowed until the response's headers arrive; none when absent or 0. */
  headersTimeoutMs?: number;
  /** Time allowed between two chunks of the body; none when absent or 0 (watches stay open for minutes). */
  bodyTimeoutMs?: number;
}

/** An error named for a timeout, with a code like undici's, so callers tell it from a refused connection. */
export class HttpTimeoutError extends Error {
  override readonly name = "TimeoutError";
  readonly code: "HEADERS_TIMEOUT" | "BODY_TIMEOUT";
  constructor(message: string, code: "HEADERS_TIMEOUT" | "BODY_TIMEOUT") {
    super(message);
    this.code = code;
  }
}

/** Sends one request; resolves once the response's headers are in. */
export function request(url: string, opts: RequestOptions): Promise<HttpResponse> {
  const u = new URL(url);
  const mod = u.protocol === "https:" ? https : http;
  const headers: Record<string, string> = { ...opts.headers };
  if (opts.body != null) headers["content-length"] = String(Buffer.byteLength(opts.body));
  return new Promise<HttpResponse>((resolve, reject) => {
    const req = mod.request(u, { method: opts.method, headers, agent: opts.agent.agentFor(u.protocol), ...(opts.signal ? { signal: opts.signal } : {}) });
    let headersTimer: NodeJS.Timeout | undefined;
    if (opts.headersTimeoutMs) {
      headersTimer = setTimeout(() => req.destroy(new HttpTimeoutError(`no response headers from ${u.host} within ${opts.headersTimeoutMs} ms`, "HEADERS_TIMEOUT")), opts.headersTimeoutMs);
    }
    // `on`, not `once`: a second error with no listener would be thrown; a settled promise ignores it.
    req.on("error", (err) => {
      clearTimeout(headersTimer);
      reject(err);
    });
    req.once("response", (res) => {
      clearTimeout(headersTimer);
      if (opts.bodyTimeoutMs) {
        res.setTimeout(opts.bodyTimeoutMs, () => res.destroy(new HttpTimeoutError(`the response from ${u.host} stalled for ${opts.bodyTimeoutMs} ms`, "BODY_TIMEOUT")));
      }
      resolve({ statusCode: res.statusCode ?? 0, headers: distinctHeaders(res), body: responseBody(res, opts.signal) });
    });
    req.end(opts.body ?? undefined);
  });
}

/**
 * One value per header, and every value of a repeated one as an array: Node's `headers` joins
 * repeats with commas, which would run two WWW-Authenticate challenges into one.
 */
function distinctHeaders(res: IncomingMessage): IncomingHttpHeaders {
  const out: IncomingHttpHeaders = {};
  for (const [name, values] of Object.entries(res.headersDistinct)) out[name] = values?.length === 1 ? values[0] : values;
  return out;
}

function responseBody(res: IncomingMessage, signal: AbortSignal | undefined): ResponseBody {
  // Node ends a body cut off by the signal with a plain "aborted": name it as the request's own abort is named.
  async function* chunks(): AsyncGenerator<Buffer> {
    try {
      for await (const chunk of res) yield chunk as Buffer;
    } catch (err) {
      if (signal?.aborted) throw new DOMException("This operation was aborted", { name: "AbortError", cause: signal.reason });
      throw err;
    }
  }
  const bytes = async () => {
    const parts: Buffer[] = [];
    for await (const chunk of chunks()) parts.push(chunk);
    return Buffer.concat(parts);
  };
  return {
    [Symbol.asyncIterator]: chunks,
    bytes,
    text: async () => (await bytes()).toString("utf8"),
    async dump() {
      if (res.readableEnded || res.destroyed) return;
      res.resume();
      await new Promise<void>((resolve) => {
        res.once("end", resolve);
        res.once("close", resolve);
        res.once("error", () => resolve());
      });
    },
    destroy: () => res.destroy(),
  };
}
