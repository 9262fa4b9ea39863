import { readFileSync } from "node:fs";
import { HttpAgent, request as httpRequest, type HttpResponse } from "../http/transport.ts";
import type { Credential } from "./exec-credential.ts";
import { resolveClusterAccess, type ClusterAccess } from "./kubeconfig.ts";
import type { ListMeta, Status } from "./types.ts";
import { withoutMembers } from "./unread-members.ts";

/** An error answer from the API server, carrying its Status reason. */
export class KubeApiError extends Error {
  override name = "KubeApiError";
  readonly status: number;
  readonly reason: string;
  constructor(status: number, reason: string, message: string) {
    super(message);
    this.status = status;
    this.reason = reason;
  }
}

export const isNotFound = (e: unknown) => e instanceof KubeApiError && e.status === 404;
export const isConflict = (e: unknown) => e instanceof KubeApiError && e.status === 409;
export const isGone = (e: unknown) => e instanceof KubeApiError && e.status === 410;

/** A request refused before it was sent: the client's fence is down (leadership lost, or shutting down). */
export class FencedError extends Error {
  override name = "FencedError";
}

/** The most a 429's Retry-After may make one request wait, and how many 429s in a row one request accepts. */
export const THROTTLE_MAX_WAIT_MS = 30_000;
export const THROTTLE_MAX_RETRIES = 10;

/** Milliseconds a 429/503 answer asks to wait (Retry-After in seconds or as a date), capped; 1 s when absent or unreadable. */
export function retryAfterMs(header: string | string[] | undefined, nowMs = Date.now()): number {
  const value = (Array.isArray(header) ? header[0] : header)?.trim();
  let ms = 1000;
  if (value && /^\d+$/.test(value)) ms = Number(value) * 1000;
  else if (value && /[a-z]/i.test(value) && !Number.isNaN(Date.parse(value))) ms = Date.parse(value) - nowMs;
  return Math.min(Math.max(ms, 0), THROTTLE_MAX_WAIT_MS);
}

export type Query = Record<string, string | number | boolean | undefined>;

export interface RequestOptions {
  query?: Query;
  body?: unknown;
  contentType?: string;
  signal?: AbortSignal;
  /** Kubernetes verb for request accounting; derived from the method when absent. */
  verb?: string;
  timeoutMs?: number;
  /** Sent even when the fence is down: only leader election's own Lease requests. */
  unfenced?: boolean;
  /**
   * The caller does not read the answer (a node patch, an Event): it is not parsed, and the
   * request resolves to undefined. The API server sends a whole Node back for each patch;
   * parsing thousands of them in an upgrade cost more CPU than sending the patches.
   */
  discardBody?: boolean;
  /** Members cut from the answer's text before it is parsed (src/kube/unread-members.ts): a list whose items' transform drops them. */
  unread?: readonly string[];
}

export interface WatchEvent<T> {
  type: "ADDED" | "MODIFIED" | "DELETED" | "BOOKMARK" | "ERROR";
  object: T;
}

export interface ListResult<T> {
  items: T[];
  metadata: ListMeta;
}

/** The API server's "slow down": 429 from API Priority and Fairness, or 503 with a Retry-After. */
const isThrottled = (res: HttpResponse) => res.statusCode === 429 || (res.statusCode === 503 && res.headers["retry-after"] !== undefined);

/** Waits, ending early (the next send then refuses or aborts) if a signal aborts. */
function sleepUnlessAborted(ms: number, signals: (AbortSignal | undefined)[]): Promise<void> {
  const live = signals.filter((s): s is AbortSignal => s !== undefined);
  return new Promise((resolve) => {
    if (live.some((s) => s.aborted)) return resolve();
    const done = () => {
      clearTimeout(timer);
      for (const s of live) s.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    for (const s of live) s.addEventListener("abort", done, { once: true });
  });
}

/**
 * GPUOP_TRACE_REQUESTS=1: every request but a watch is written to stderr as one JSON line, body
 * included (the benchmark accounts for each node's patches and Events with it; off by default).
 */
const TRACE_REQUESTS = process.env.GPUOP_TRACE_REQUESTS === "1";

const verbOf: Record<string, string> = { GET: "get", POST: "create", PUT: "update", PATCH: "patch", DELETE: "delete" };

/**
 * A small Kubernetes API client: JSON over HTTPS with the kubeconfig's or the
 * service account's credentials. It counts requests by verb so the operator's
 * write behaviour can be measured and tested.
 */
export class KubeClient {
  readonly access: ClusterAccess;
  readonly requestCounts = new Map<string, number>();
  private readonly dispatcher: HttpAgent;
  /** A client certificate from an exec plugin: its own connections, replaced when the plugin gives a new one. */
  private pluginAgent?: { cert: Buffer; dispatcher: HttpAgent };
  private tokenCache?: { value: string; readAt: number };
  /**
   * Once this signal aborts, no request is sent and requests in flight are
   * aborted (except `unfenced` ones). The operator sets it to a signal that
   * aborts when leadership is lost or on shutdown, so a replica that may no
   * longer lead never acts.
   */
  fence: AbortSignal | undefined;

  constructor(access: ClusterAccess) {
    this.access = access;
    this.dispatcher = KubeClient.agent(access, access.clientCert, access.clientKey);
  }

  private static agent(access: ClusterAccess, cert?: Buffer, key?: Buffer): HttpAgent {
    return new HttpAgent({
      ...(access.ca ? { ca: access.ca } : {}),
      ...(cert ? { cert } : {}),
      ...(key ? { key } : {}),
      ...(access.tlsServerName ? { servername: access.tlsServerName } : {}),
      rejectUnauthorized: !access.insecureSkipTLSVerify,
      keepAliveMs: 30_000,
    });
  }

  static load(opts: { kubeconfig?: string; context?: string } = {}): KubeClient {
    return new KubeClient(resolveClusterAccess(opts));
  }

  async close(): Promise<void> {
    await this.dispatcher.close();
    await this.pluginAgent?.dispatcher.close();
  }

  /** The Authorization header and the connection pool for the next request. */
  private async credentials(): Promise<{ auth?: string; dispatcher: HttpAgent; credential?: Credential }> {
    const plugin = this.access.credentials;
    if (!plugin) {
      const auth = this.staticAuth();
      return { ...(auth ? { auth } : {}), dispatcher: this.dispatcher };
    }
    const c = await plugin.get();
    let dispatcher = this.dispatcher;
    if (c.clientCert && c.clientKey) {
      if (!this.pluginAgent || !this.pluginAgent.cert.equals(c.clientCert)) {
        const old = this.pluginAgent?.dispatcher;
        this.pluginAgent = { cert: c.clientCert, dispatcher: KubeClient.agent(this.access, c.clientCert, c.clientKey) };
        // Requests in flight on the old pool finish; it takes no new ones.
        void old?.close().catch(() => undefined);
      }
      dispatcher = this.pluginAgent.dispatcher;
    }
    return { ...(c.token ? { auth: `Bearer ${c.token}` } : {}), dispatcher, credential: c };
  }

  private staticAuth(): string | undefined {
    const a = this.access;
    if (a.tokenFile) {
      const now = Date.now();
      if (!this.tokenCache || now - this.tokenCache.readAt > 60_000) {
        this.tokenCache = { value: readFileSync(a.tokenFile, "utf8").trim(), readAt: now };
      }
      return `Bearer ${this.tokenCache.value}`;
    }
    if (a.token) return `Bearer ${a.token}`;
    if (a.username !== undefined) return `Basic ${Buffer.from(`${a.username}:${a.password ?? ""}`).toString("base64")}`;
    return undefined;
  }

  private url(path: string, query?: Query): string {
    const u = new URL(this.access.server + path);
    for (const [k, v] of Object.entries(query ?? {})) if (v !== undefined) u.searchParams.set(k, String(v));
    return u.toString();
  }

  private async send(method: string, path: string, opts: RequestOptions, retried = false): Promise<HttpResponse> {
    const fence = opts.unfenced ? undefined : this.fence;
    if (fence?.aborted) throw new FencedError(`${method} ${path} not sent: ${String(fence.reason ?? "this client is fenced")}`);
    const signals = [opts.signal, fence].filter((s): s is AbortSignal => s !== undefined);
    const signal = signals.length > 1 ? AbortSignal.any(signals) : signals[0];
    const verb = opts.verb ?? verbOf[method] ?? method.toLowerCase();
    this.requestCounts.set(verb, (this.requestCounts.get(verb) ?? 0) + 1);
    if (TRACE_REQUESTS && verb !== "watch") process.stderr.write(JSON.stringify({ ts: new Date().toISOString(), msg: "request", verb, path, query: opts.query, body: opts.body }) + "\n");
    const headers: Record<string, string> = { accept: "application/json", "user-agent": "gpuop" };
    const { auth, dispatcher, credential } = await this.credentials();
    if (auth) headers.authorization = auth;
    let body: string | undefined;
    if (opts.body !== undefined) {
      headers["content-type"] = opts.contentType ?? "application/json";
      body = typeof opts.body === "string" ? opts.body : JSON.stringify(opts.body);
    }
    let res: HttpResponse;
    try {
      res = await httpRequest(this.url(path, opts.query), {
        method,
        headers,
        body,
        agent: dispatcher,
        signal,
        // Watches stay open for minutes (the server ends them with timeoutSeconds): no body timeout.
        headersTimeoutMs: opts.timeoutMs ?? 60_000,
      });
    } catch (err) {
      if (fence?.aborted && !opts.signal?.aborted) throw new FencedError(`${method} ${path} aborted: ${String(fence.reason ?? "this client is fenced")}`, { cause: err });
      if ((err as Error).name === "AbortError") throw err;
      const code = (err as { code?: string }).code ?? (err as Error).message;
      throw new Error(`cannot reach the Kubernetes API at ${this.access.server} (${this.access.source}): ${code}`, { cause: err });
    }
    // A plugin's token can be revoked or expire early: ask the plugin once more, as kubectl does.
    if (res.statusCode === 401 && this.access.credentials && !retried) {
      await res.body.dump();
      this.access.credentials.invalidate(credential);
      return this.send(method, path, opts, true);
    }
    return res;
  }

  private static async fail(res: HttpResponse, method: string, path: string): Promise<never> {
    const text = await res.body.text();
    let status: Partial<Status> = {};
    try {
      status = JSON.parse(text) as Status;
    } catch {
      // Not a Status object (a proxy's page, say): keep the raw text below.
    }
    const message = status.message ?? text.slice(0, 300);
    throw new KubeApiError(res.statusCode, status.reason ?? `HTTP${res.statusCode}`, `${method} ${path}: ${res.statusCode} ${message}`);
  }

  /**
   * Sends a request; a 429 (or 503) with Retry-After is sent again after the
   * wait it asks for (capped), up to THROTTLE_MAX_RETRIES times, so throttling
   * slows the work down without skipping any of it. Other errors are the
   * caller's to retry: a write is never re-sent here with a body that may
   * have gone stale.
   */
  async request<T>(method: string, path: string, opts: RequestOptions = {}): Promise<T> {
    let res = await this.send(method, path, opts);
    for (let attempt = 1; attempt <= THROTTLE_MAX_RETRIES && isThrottled(res); attempt++) {
      const waitMs = retryAfterMs(res.headers["retry-after"]);
      await res.body.dump();
      await sleepUnlessAborted(waitMs, [opts.signal, opts.unfenced ? undefined : this.fence]);
      res = await this.send(method, path, opts);
    }
    if (res.statusCode >= 300) return KubeClient.fail(res, method, path);
    if (opts.discardBody) {
      await res.body.dump();
      return undefined as T;
    }
    const text = await res.body.text();
    return (text ? JSON.parse(opts.unread?.length ? withoutMembers(text, opts.unread) : text) : undefined) as T;
  }

  get<T>(path: string, opts: RequestOptions = {}): Promise<T> {
    return this.request<T>("GET", path, { verb: "get", ...opts });
  }

  /** Lists a collection, following `continue` tokens so the caller gets every item. */
  /** Every page of a list; `each` maps each item as its page arrives, so whole objects of one page at most are held at once. */
  async list<T>(path: string, query: Query = {}, opts: RequestOptions & { each?: (item: T) => T } = {}): Promise<ListResult<T>> {
    const { each, ...requestOpts } = opts;
    const items: T[] = [];
    let cont: string | undefined;
    let metadata: ListMeta;
    do {
      const page = await this.request<ListResult<T>>("GET", path, { verb: "list", ...requestOpts, query: { limit: 500, ...query, continue: cont } });
      for (const item of page.items ?? []) items.push(each ? each(item) : item);
      metadata = page.metadata ?? {};
      cont = metadata.continue || undefined;
    } while (cont);
    return { items, metadata };
  }

  create<T>(path: string, body: unknown, opts: RequestOptions = {}): Promise<T> {
    return this.request<T>("POST", path, { ...opts, body });
  }

  delete<T>(path: string, opts: RequestOptions = {}): Promise<T> {
    return this.request<T>("DELETE", path, opts);
  }

  /** A JSON merge patch. */
  mergePatch<T>(path: string, patch: unknown, opts: RequestOptions = {}): Promise<T> {
    return this.request<T>("PATCH", path, { ...opts, body: patch, contentType: "application/merge-patch+json" });
  }

  /** Server-side apply under a field manager; force takes over fields another manager set. */
  apply<T>(path: string, object: unknown, fieldManager: string, opts: RequestOptions & { force?: boolean } = {}): Promise<T> {
    return this.request<T>("PATCH", path, {
      ...opts,
      body: object,
      contentType: "application/apply-patch+yaml",
      query: { fieldManager, force: opts.force ?? true, ...opts.query },
    });
  }

  /**
   * Streams watch events until the server ends the watch (timeoutSeconds) or the
   * signal aborts. An ERROR event becomes a KubeApiError (410 Gone means relist).
   * `unread`: members cut from each event's text before it is parsed (src/kube/unread-members.ts),
   * for a caller that would drop them anyway.
   */
  async watch<T>(path: string, query: Query, onEvent: (e: WatchEvent<T>) => void, signal?: AbortSignal, opts: { unread?: readonly string[] } = {}): Promise<void> {
    const unread = opts.unread?.length ? opts.unread : undefined;
    const res = await this.send("GET", path, { verb: "watch", signal, query: { ...query, watch: true } });
    if (res.statusCode >= 300) return KubeClient.fail(res, "WATCH", path);
    let buffered = "";
    // A chunk may end inside a multi-byte character: the decoder carries it over.
    const decoder = new TextDecoder();
    try {
      for await (const chunk of res.body) {
        // Lines are cut by index and the rest kept once per chunk, and a long line is
        // scanned once: linear in what arrives (slicing per line was quadratic).
        let from = buffered.length;
        buffered += decoder.decode(chunk as Buffer, { stream: true });
        let start = 0;
        let nl: number;
        while ((nl = buffered.indexOf("\n", from)) >= 0) {
          const line = buffered.slice(start, nl).trim();
          start = from = nl + 1;
          if (!line) continue;
          const event = JSON.parse(unread ? withoutMembers(line, unread) : line) as WatchEvent<T>;
          if (event.type === "ERROR") {
            const s = event.object as unknown as Status;
            throw new KubeApiError(s.code ?? 500, s.reason ?? "WatchError", `WATCH ${path}: ${s.message ?? "error"}`);
          }
          onEvent(event);
        }
        buffered = buffered.slice(start);
      }
    } catch (err) {
      if (signal?.aborted) return;
      throw err;
    } finally {
      res.body.destroy();
    }
  }
}
