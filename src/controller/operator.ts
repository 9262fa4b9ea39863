import type { Server } from "node:http";
import http from "../http/node-http.ts";
import { hostname } from "node:os";
import { KubeClient } from "../kube/client.ts";
import { EventRecorder } from "../kube/events.ts";
import { LeaderElector } from "../kube/lease.ts";
import type { Logger } from "../kube/log.ts";
import { DriverController } from "./driver-controller.ts";
import { driverPodInformer, nodeInformer, operandPodInformer } from "./shared-caches.ts";
import { ImageChecker } from "./image-check.ts";
import { OperandController } from "./operand-controller.ts";
import { OperatorMetrics } from "./metrics.ts";
import { parseRestrictedNodeLabel, RepositoryAllowList } from "../core/security.ts";

export interface OperatorOptions {
  kubeconfig?: string;
  namespace: string;
  leaderElect: boolean;
  leaseName: string;
  identity?: string;
  /** host:port for /metrics; "0" disables. */
  metricsAddress: string;
  /** host:port for /healthz and /readyz; "0" disables. */
  healthAddress: string;
  log: Logger;
  /** Check that each pool's driver image exists before moving nodes onto it (default true). */
  imageCheck?: boolean;
  plainHttpRegistries?: string[];
  imageRecheckSeconds?: number;
  /** Image repositories driver pods may use (empty: any). */
  allowedImageRepositories?: string[];
  /** PEM CA certificates trusted for registries, besides the system's. */
  registryCa?: string;
  /** An admin-only label (node-restriction.kubernetes.io/…) GPU nodes must carry. */
  gpuNodeLabel?: string;
  /** Driver version for a policy without spec.driver.version. */
  defaultDriverVersion?: string;
  /** Nodes with all these labels are GPU nodes too. */
  gpuNodeSelector?: Record<string, string>;
  /** Run the conventional driver where the precompiled one is missing or cannot be pulled (default true). */
  conventionalFallback?: boolean;
  imagePullGraceSeconds?: number;
}

function listen(server: Server, address: string): Promise<void> {
  const i = address.lastIndexOf(":");
  const host = i > 0 ? address.slice(0, i) : undefined;
  const port = Number(address.slice(i + 1));
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve());
  });
}

/**
 * Runs the operator until SIGTERM/SIGINT: serves probes and metrics, waits to
 * lead (when leader election is on), then runs the driver controller. On a
 * signal it stops reconciling, releases the lease so a standby takes over at
 * once, and returns. It exits non-zero if leadership is lost.
 */
export async function runOperator(opts: OperatorOptions): Promise<number> {
  const log = opts.log;
  const client = KubeClient.load(opts.kubeconfig ? { kubeconfig: opts.kubeconfig } : {});
  const metrics = new OperatorMetrics();
  const images = opts.imageCheck === false
    ? undefined
    : new ImageChecker(client, log, { plainHttpRegistries: opts.plainHttpRegistries ?? [], missingTtlMs: (opts.imageRecheckSeconds ?? 60) * 1000,
        // A found image (and its digest: a republished tag) is asked again ten times less often, at most every 10 minutes.
        presentTtlMs: Math.min(10 * 60_000, (opts.imageRecheckSeconds ?? 60) * 10_000),
        ...(opts.registryCa ? { ca: opts.registryCa } : {}) });
  const allowedRepositories = new RepositoryAllowList(opts.allowedImageRepositories ?? []);
  if (allowedRepositories.enabled) log.info("driver images restricted to allowed repositories", { repositories: allowedRepositories.entries });
  const gpuNodeLabel = opts.gpuNodeLabel ? parseRestrictedNodeLabel(opts.gpuNodeLabel) : undefined;
  const events = new EventRecorder(client, "gpuop", log);
  // One cache and one watch of the nodes, and of the driver pods, for both controllers: they are most of what is cached.
  const nodes = nodeInformer(client, log);
  const driverPods = driverPodInformer(client, opts.namespace, log);
  const operandPods = operandPodInformer(client, opts.namespace, log);
  const controller = new DriverController({ client, nodes, driverPods, operandPods, namespace: opts.namespace, log, metrics, events, ...(images ? { images } : {}), allowedRepositories, ...(gpuNodeLabel ? { gpuNodeLabel } : {}), ...(opts.defaultDriverVersion ? { defaultDriverVersion: opts.defaultDriverVersion } : {}), ...(opts.gpuNodeSelector ? { gpuNodeSelector: opts.gpuNodeSelector } : {}),
    conventionalFallback: opts.conventionalFallback ?? true, pullGraceMs: (opts.imagePullGraceSeconds ?? 300) * 1000,
  });
  const operands = new OperandController({ client, nodes, driverPods, operandPods, namespace: opts.namespace, log, events, metrics, ...(gpuNodeLabel ? { gpuNodeLabel } : {}) });
  // The pod name (downward API) is unique among replicas; outside a pod, host and pid are.
  const identity = opts.identity ?? process.env.POD_NAME ?? `${hostname()}_${process.pid}`;
  const elector = new LeaderElector(client, { namespace: opts.namespace, name: opts.leaseName, identity }, log);
  const stop = new AbortController();
  // Every request but the Lease's own stops when leadership is lost or on shutdown: a write
  // still in flight then could land after another replica has taken over.
  client.fence = stop.signal;
  let exitCode = 0;
  let synced = false;
  let standby = opts.leaderElect;
  void Promise.all([controller.synced(), operands.synced()]).then(() => (synced = true));

  const servers: Server[] = [];
  type Answer = [number, string, string?];
  const serve = async (address: string, routes: Record<string, () => Answer | Promise<Answer>>) => {
    if (address === "0" || address === "") return;
    const server = http.createServer((req, res) => {
      const route = routes[(req.url ?? "").split("?")[0] ?? ""];
      void Promise.resolve(route ? route() : ([404, "not found\n"] as Answer)).then(
        ([code, body, type]) => {
          res.writeHead(code, { "content-type": type ?? "text/plain; charset=utf-8" });
          res.end(body);
        },
        (err: unknown) => {
          res.writeHead(500, { "content-type": "text/plain; charset=utf-8" });
          res.end(`${(err as Error).message}\n`);
        },
      );
    });
    await listen(server, address);
    servers.push(server);
  };
  await serve(opts.healthAddress, {
    "/healthz": () => [200, "ok\n"],
    // A standby replica is ready: it is healthy and waiting to lead.
    "/readyz": () => (standby || synced ? [200, "ok\n"] : [503, "caches not synced\n"]),
  });
  // Each cache once: the two controllers share the node and pod informers.
  const informers = [...new Set([...controller.informers, ...operands.informers])];
  const countWatchEvents = () => {
    const totals = new Map<string, { handled: number; unchanged: number }>();
    for (const i of informers) {
      const t = totals.get(i.resource) ?? { handled: 0, unchanged: 0 };
      t.handled += i.eventsHandled;
      t.unchanged += i.unchangedSkipped;
      totals.set(i.resource, t);
    }
    for (const [resource, t] of totals) {
      metrics.watchEvents.setTotal({ resource, outcome: "handled" }, t.handled);
      metrics.watchEvents.setTotal({ resource, outcome: "unchanged" }, t.unchanged);
    }
  };
  await serve(opts.metricsAddress, {
    "/metrics": async () => {
      countWatchEvents();
      return [200, await metrics.render(), metrics.contentType];
    },
  });

  const onSignal = (sig: string) => {
    log.info("shutting down", { signal: sig });
    stop.abort(new Error(`shutting down on ${sig}`));
  };
  process.once("SIGTERM", () => onSignal("SIGTERM"));
  process.once("SIGINT", () => onSignal("SIGINT"));

  log.info("gpuop operator starting", { namespace: opts.namespace, leaderElect: opts.leaderElect, identity, server: client.access.server });
  try {
    if (opts.leaderElect) {
      const leading = new Promise<void>((resolve) => {
        void elector.run(
          () => {
            standby = false;
            metrics.leader.set(1);
            resolve();
          },
          () => {
            exitCode = 1;
            stop.abort(new Error("leadership lost"));
          },
          stop.signal,
        );
        stop.signal.addEventListener("abort", () => resolve(), { once: true });
      });
      await leading;
    }
    if (!stop.signal.aborted) await Promise.all([controller.run(stop.signal), operands.run(stop.signal)]);
  } finally {
    await elector.release();
    await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
    await client.close();
    await images?.close();
    log.info("gpuop operator stopped");
  }
  return exitCode;
}
