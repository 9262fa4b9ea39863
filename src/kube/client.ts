import { readFileSync } from "node:fs";
import { Agent, request as httpRequest, type Dispatcher } from "undici";
import { resolveClusterAccess, type ClusterAccess } from "./kubeconfig.ts";
import type { ListMeta, Status } from "./types.ts";

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

export type Query = Record<string, string | number | boolean | undefined>;

export interface RequestOptions {
  query?: Query;
  body?: unknown;
  contentType?: string;
  signal?: AbortSignal;
  /** Kubernetes verb for request accounting; derived from the method when absent. */
  verb?: string;
  timeoutMs?: number;
}

export interface WatchEvent<T> {
  type: "ADDED" | "MODIFIED" | "DELETED" | "BOOKMARK" | "ERROR";
  object: T;
}

export interface ListResult<T> {
  items: T[];
  metadata: ListMeta;
}

const verbOf: Record<string, string> = { GET: "get", POST: "create", PUT: "update", PATCH: "patch", DELETE: "delete" };

/**
 * A small Kubernetes API client: JSON over HTTPS with the kubeconfig's or the
 * service account's credentials. It counts requests by verb so the operator's
 * write behaviour can be measured and tested.
 */
export class KubeClient {
  readonly access: ClusterAccess;
  readonly requestCounts = new Map<string, number>();
  private readonly dispatcher: Dispatcher;
  private tokenCache?: { value: string; readAt: number };

  constructor(access: ClusterAccess) {
    this.access = access;
    this.dispatcher = new Agent({
      connect: {
        ...(access.ca ? { ca: access.ca } : {}),
        ...(access.clientCert ? { cert: access.clientCert } : {}),
        ...(access.clientKey ? { key: access.clientKey } : {}),
        rejectUnauthorized: !access.insecureSkipTLSVerify,
      },
      // Watches stay open for minutes; the server ends them with timeoutSeconds.
      bodyTimeout: 0,
      headersTimeout: 60_000,
      keepAliveTimeout: 30_000,
    });
  }

  static load(opts: { kubeconfig?: string; context?: string } = {}): KubeClient {
    return new KubeClient(resolveClusterAccess(opts));
  }

  async close(): Promise<void> {
    await this.dispatcher.close();
  }

  private authHeader(): string | undefined {
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

  private async send(method: string, path: string, opts: RequestOptions): Promise<Dispatcher.ResponseData> {
    const verb = opts.verb ?? verbOf[method] ?? method.toLowerCase();
    this.requestCounts.set(verb, (this.requestCounts.get(verb) ?? 0) + 1);
    const headers: Record<string, string> = { accept: "application/json", "user-agent": "gpuop" };
    const auth = this.authHeader();
    if (auth) headers.authorization = auth;
    let body: string | undefined;
    if (opts.body !== undefined) {
      headers["content-type"] = opts.contentType ?? "application/json";
      body = typeof opts.body === "string" ? opts.body : JSON.stringify(opts.body);
    }
    try {
      return await httpRequest(this.url(path, opts.query), {
        method: method as Dispatcher.HttpMethod,
        headers,
        body,
        dispatcher: this.dispatcher,
        signal: opts.signal,
        ...(opts.timeoutMs ? { headersTimeout: opts.timeoutMs } : {}),
      });
    } catch (err) {
      if ((err as Error).name === "AbortError") throw err;
      const code = (err as { code?: string }).code ?? (err as Error).message;
      throw new Error(`cannot reach the Kubernetes API at ${this.access.server} (${this.access.source}): ${code}`, { cause: err });
    }
  }

  private static async fail(res: Dispatcher.ResponseData, method: string, path: string): Promise<never> {
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

  async request<T>(method: string, path: string, opts: RequestOptions = {}): Promise<T> {
    const res = await this.send(method, path, opts);
    if (res.statusCode >= 300) return KubeClient.fail(res, method, path);
    const text = await res.body.text();
    return (text ? JSON.parse(text) : undefined) as T;
  }

  get<T>(path: string, opts: RequestOptions = {}): Promise<T> {
    return this.request<T>("GET", path, { verb: "get", ...opts });
  }

  /** Lists a collection, following `continue` tokens so the caller gets every item. */
  async list<T>(path: string, query: Query = {}, opts: RequestOptions = {}): Promise<ListResult<T>> {
    const items: T[] = [];
    let cont: string | undefined;
    let metadata: ListMeta;
    do {
      const page = await this.request<ListResult<T>>("GET", path, { verb: "list", ...opts, query: { limit: 500, ...query, continue: cont } });
      items.push(...(page.items ?? []));
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
   */
  async watch<T>(path: string, query: Query, onEvent: (e: WatchEvent<T>) => void, signal?: AbortSignal): Promise<void> {
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
          const event = JSON.parse(line) as WatchEvent<T>;
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
