// A loopback HTTP proxy between one client (an operator process) and the
// cluster's API server, which a test can pause (a partition), make drop every
// connection, or have answer chosen requests with an error such as 429 with
// Retry-After. The client speaks plain HTTP to the proxy on 127.0.0.1; the
// proxy speaks TLS to the API server with the cluster kubeconfig's client
// certificate, so the client acts as that user.
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { Agent, request as httpsRequest } from "node:https";
import { readFileSync, writeFileSync } from "node:fs";
import type { Socket } from "node:net";
import { dirname, isAbsolute, join } from "node:path";
import { parse as parseYaml } from "yaml";

/** One request as the proxy saw it. */
export interface ProxiedRequest {
  /** When it reached the proxy (ms since the epoch). */
  at: number;
  method: string;
  /** Path and query. */
  url: string;
  body: string;
  /** What happened to it: sent on to the API server, answered by an injected error, or dropped (its client went away while held). */
  outcome: "forwarded" | "injected" | "dropped" | "pending";
  /** The status the client got. */
  status?: number;
  /** For an injected answer, its Retry-After in seconds. */
  retryAfter?: number;
}

/** Answer matching requests with `status` instead of forwarding them. */
export interface Injection {
  match: (r: { method: string; url: string; body: string }) => boolean;
  status: number;
  retryAfterSeconds?: number;
  /** Inject on the first request of each distinct method+url only, so each one's retry goes through (default false). */
  oncePerRequest?: boolean;
  /** Stop after this many injections (default unlimited). */
  limit?: number;
}

export interface ApiProxy {
  url: string;
  /** A kubeconfig whose server is this proxy. */
  kubeconfig: string;
  readonly requests: ProxiedRequest[];
  /** Holds new requests and stops streaming answers (watches) until resume; nothing is lost, only delayed. */
  pause(): void;
  /** Pauses as the first request matching arrives, holding that request too (so the client has it in flight). */
  pauseWhen(match: (r: ProxiedRequest) => boolean): void;
  /** When the proxy last paused, or undefined while it never has. */
  readonly pausedAt: number | undefined;
  /** Closes every connection and refuses new ones until resume. */
  drop(): void;
  resume(): void;
  inject(rule: Injection): void;
  clearInjections(): void;
  close(): Promise<void>;
}

interface Upstream {
  server: URL;
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
}

type Kubeconfig = {
  "current-context"?: string;
  clusters: { name: string; cluster: Record<string, string> }[];
  users: { name: string; user: Record<string, string> }[];
  contexts: { name: string; context: { cluster: string; user: string } }[];
};

function upstreamOf(kubeconfig: string): Upstream {
  const raw = parseYaml(readFileSync(kubeconfig, "utf8")) as Kubeconfig;
  const ctx = raw.contexts.find((c) => c.name === raw["current-context"])?.context ?? raw.contexts[0]!.context;
  const cluster = raw.clusters.find((c) => c.name === ctx.cluster)!.cluster;
  const user = raw.users.find((u) => u.name === ctx.user)?.user ?? {};
  const file = (inline?: string, ref?: string) =>
    inline ? Buffer.from(inline, "base64") : ref ? readFileSync(isAbsolute(ref) ? ref : join(dirname(kubeconfig), ref)) : undefined;
  const up: Upstream = { server: new URL(cluster.server!) };
  const ca = file(cluster["certificate-authority-data"], cluster["certificate-authority"]);
  const cert = file(user["client-certificate-data"], user["client-certificate"]);
  const key = file(user["client-key-data"], user["client-key"]);
  if (ca) up.ca = ca;
  if (cert) up.cert = cert;
  if (key) up.key = key;
  return up;
}

/** Starts a proxy in front of the API server of `kubeconfig`; writes its own kubeconfig to `kubeconfigOut`. */
export async function startApiProxy(kubeconfig: string, kubeconfigOut: string): Promise<ApiProxy> {
  const up = upstreamOf(kubeconfig);
  const agent = new Agent({ keepAlive: true, ...(up.ca ? { ca: up.ca } : {}), ...(up.cert ? { cert: up.cert } : {}), ...(up.key ? { key: up.key } : {}) });
  const requests: ProxiedRequest[] = [];
  let injections: { rule: Injection; used: number; seen: Set<string> }[] = [];
  let mode: "open" | "paused" | "dropping" = "open";
  let pauseTrigger: ((r: ProxiedRequest) => boolean) | undefined;
  let pausedAt: number | undefined;
  let waiters: (() => void)[] = [];
  const sockets = new Set<Socket>();
  /** Streaming answers in progress: while paused, their chunks wait here. */
  const streams = new Set<{ flush: () => void }>();

  const released = () => (mode === "open" ? Promise.resolve() : new Promise<void>((r) => waiters.push(r)));

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = Buffer.concat(chunks).toString("utf8");
    const rec: ProxiedRequest = { at: Date.now(), method: req.method ?? "GET", url: req.url ?? "/", body, outcome: "pending" };
    requests.push(rec);
    if (pauseTrigger?.(rec)) {
      pauseTrigger = undefined;
      mode = "paused";
      pausedAt = rec.at;
    }
    let gone = false;
    res.on("close", () => (gone = true));
    await released();
    if (gone || res.destroyed) {
      rec.outcome = "dropped";
      return;
    }
    const key = `${rec.method} ${rec.url}`;
    for (const inj of injections) {
      const { rule } = inj;
      if (rule.limit !== undefined && inj.used >= rule.limit) continue;
      if (rule.oncePerRequest && inj.seen.has(key)) continue;
      if (!rule.match(rec)) continue;
      inj.used++;
      inj.seen.add(key);
      rec.outcome = "injected";
      rec.status = rule.status;
      const headers: Record<string, string> = { "content-type": "application/json" };
      if (rule.retryAfterSeconds !== undefined) {
        headers["retry-after"] = String(rule.retryAfterSeconds);
        rec.retryAfter = rule.retryAfterSeconds;
      }
      const reason = rule.status === 429 ? "TooManyRequests" : rule.status === 409 ? "Conflict" : "InternalError";
      res.writeHead(rule.status, headers);
      res.end(JSON.stringify({ kind: "Status", apiVersion: "v1", status: "Failure", code: rule.status, reason, message: `injected by the test proxy: ${reason}` }));
      return;
    }
    rec.outcome = "forwarded";
    const headers = { ...req.headers, host: up.server.host };
    delete headers.authorization;
    const upReq = httpsRequest(
      { protocol: up.server.protocol, hostname: up.server.hostname, port: up.server.port, method: rec.method, path: rec.url, headers, agent },
      (upRes) => {
        rec.status = upRes.statusCode;
        res.writeHead(upRes.statusCode ?? 502, upRes.headers);
        let held: Buffer[] = [];
        const stream = {
          flush: () => {
            for (const c of held) res.write(c);
            held = [];
          },
        };
        streams.add(stream);
        upRes.on("data", (c: Buffer) => {
          if (mode === "open") res.write(c);
          else held.push(c);
        });
        upRes.on("end", () => {
          void released().then(() => {
            stream.flush();
            streams.delete(stream);
            res.end();
          });
        });
        upRes.on("error", () => res.destroy());
        res.on("close", () => {
          streams.delete(stream);
          upRes.destroy();
        });
      },
    );
    upReq.on("error", (err) => {
      rec.status = 502;
      if (!res.headersSent) {
        res.writeHead(502, { "content-type": "text/plain" });
        res.end(`test proxy: ${err.message}`);
      } else res.destroy();
    });
    res.on("close", () => upReq.destroy());
    upReq.end(body);
  }

  const server = createServer((req, res) => {
    handle(req, res).catch(() => res.destroy());
  });
  server.on("connection", (s: Socket) => {
    if (mode === "dropping") {
      s.destroy();
      return;
    }
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as { port: number }).port;
  const url = `http://127.0.0.1:${port}`;
  writeFileSync(
    kubeconfigOut,
    [
      "apiVersion: v1",
      "kind: Config",
      "clusters: [{name: proxy, cluster: {server: \"" + url + "\"}}]",
      "users: [{name: proxy, user: {}}]",
      "contexts: [{name: proxy, context: {cluster: proxy, user: proxy}}]",
      "current-context: proxy",
      "",
    ].join("\n"),
  );

  return {
    url,
    kubeconfig: kubeconfigOut,
    requests,
    pause() {
      mode = "paused";
      pausedAt = Date.now();
    },
    pauseWhen(match) {
      pauseTrigger = match;
    },
    get pausedAt() {
      return pausedAt;
    },
    drop() {
      mode = "dropping";
      for (const s of sockets) s.destroy();
    },
    resume() {
      mode = "open";
      for (const s of streams) s.flush();
      const w = waiters;
      waiters = [];
      for (const r of w) r();
    },
    inject(rule) {
      injections.push({ rule, used: 0, seen: new Set() });
    },
    clearInjections() {
      injections = [];
    },
    async close() {
      injections = [];
      mode = "open";
      for (const r of waiters) r();
      waiters = [];
      for (const s of sockets) s.destroy();
      agent.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/** Requests that change something, other than leader election's Lease. */
export const isWrite = (r: { method: string; url: string }) => r.method !== "GET" && !r.url.includes("/leases");
