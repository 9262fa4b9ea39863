// The watch machinery against the real API server: a watch from a resource
// version the server no longer keeps ends in 410 Gone, and the informer then
// relists instead of stopping; ordinary changes stream into its cache.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { createServer, connect, type Server, type Socket } from "node:net";
import { attachCluster } from "./harness/cluster.ts";
import { eventually } from "./harness/wait.ts";
import { isGone, KubeClient, type Query, type WatchEvent } from "../src/kube/client.ts";
import { Informer } from "../src/kube/informer.ts";
import { fromKubeconfig } from "../src/kube/kubeconfig.ts";
import { silentLogger, type Logger } from "../src/kube/log.ts";
import type { KubeObject } from "../src/kube/types.ts";

const NS = "informer-test";
const path = `/api/v1/namespaces/${NS}/configmaps`;
let client: KubeClient;
let kubeconfig = "";
let staleVersion = "";

interface ConfigMap extends KubeObject {
  data?: Record<string, string>;
  metadata: KubeObject["metadata"] & { managedFields?: unknown[] };
}

before(async () => {
  const cluster = attachCluster(process.env.GPUOP_TEST_CLUSTER ?? "");
  kubeconfig = cluster.kubeconfig;
  client = cluster.client();
  await client.create("/api/v1/namespaces", { metadata: { name: NS } });
  const cm = await client.create<ConfigMap>(path, { metadata: { name: "churn" }, data: { n: "0" } });
  staleVersion = cm.metadata.resourceVersion!;
  for (let i = 1; i <= 20; i++) await client.mergePatch(`${path}/churn`, { data: { n: String(i) } });
  // The test cluster compacts etcd every 5 s and serves ConfigMap watches from etcd (harness/cluster.ts).
  await eventually("etcd compacted past the first version", async () => {
    try {
      await client.watch(path, { resourceVersion: staleVersion, timeoutSeconds: 1 }, () => undefined);
    } catch (err) {
      if (isGone(err)) return true;
      throw err;
    }
    return undefined;
  }, { timeoutMs: 60_000, intervalMs: 1000 });
});

after(async () => {
  await client.delete(`/api/v1/namespaces/${NS}`).catch(() => undefined);
  await client.close();
});

test("a watch from a resource version the server has compacted away fails with 410 Gone", async () => {
  await assert.rejects(
    client.watch(path, { resourceVersion: staleVersion, timeoutSeconds: 5 }, () => undefined),
    (err: unknown) => isGone(err),
  );
});

/** Waits until etcd has compacted past `version`: a watch from it then ends in 410 Gone. */
async function compactedPast(version: string): Promise<void> {
  await eventually(`etcd compacted past ${version}`, async () => {
    try {
      await client.watch(path, { resourceVersion: version, timeoutSeconds: 1 }, () => undefined);
    } catch (err) {
      if (isGone(err)) return true;
      throw err;
    }
    return undefined;
  }, { timeoutMs: 60_000, intervalMs: 1000 });
}

/** The client with its watch events recorded: what reached the informer through a watch, not a list. */
function recordingWatches(inner: KubeClient, events: string[]): KubeClient {
  return new Proxy(inner, {
    get(target, prop) {
      if (prop === "watch") {
        return <T>(p: string, q: Query, onEvent: (e: WatchEvent<T>) => void, signal?: AbortSignal, opts?: { unread?: readonly string[] }) =>
          target.watch<T>(p, q, (e) => {
            events.push(`${e.type}:${(e.object as KubeObject).metadata?.name}`);
            onEvent(e);
          }, signal, opts);
      }
      const v = Reflect.get(target, prop, target) as unknown;
      return typeof v === "function" ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}

test("the informer relists after 410 Gone and then follows changes through its watch", async () => {
  const watched: string[] = [];
  const informer = new Informer<ConfigMap>(recordingWatches(client, watched), path, {}, silentLogger);
  // Start it as if its last watch had stopped at the stale version.
  (informer as unknown as { resourceVersion: string }).resourceVersion = staleVersion;
  const seen: string[] = [];
  informer.onChange((type, obj) => seen.push(`${type}:${obj.metadata.name}:${obj.data?.n}`));
  const stop = new AbortController();
  const running = informer.run(stop.signal);
  try {
    await eventually("relisted", async () => (informer.relists >= 1 && informer.get(`${NS}/churn`)?.data?.n === "20" ? true : undefined));
    await client.create(path, { metadata: { name: "fresh" }, data: { n: "x" } });
    await eventually("watch delivers the new object", async () => (informer.get(`${NS}/fresh`) ? true : undefined));
    await client.delete(`${path}/fresh`);
    await eventually("watch delivers the deletion", async () => (informer.get(`${NS}/fresh`) ? undefined : true));
    assert.ok(seen.includes("added:fresh:x") && seen.includes("deleted:fresh:x"), seen.join(", "));
    // A relist finds these too; the watch's own events show it resumed. (The test cluster compacts
    // etcd every 5 s, so a slow machine may relist once more: the count is not the evidence.)
    assert.ok(watched.includes("ADDED:fresh") && watched.includes("DELETED:fresh"), `watch events: ${watched.join(", ")}`);
  } finally {
    stop.abort();
    await running;
  }
});

/** A TCP relay to the API server that a test can cut (existing and new connections dropped) and restore. */
async function cuttableRelay(target: URL): Promise<{ url: string; cut(): void; restore(): void; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  let open = true;
  const server: Server = createServer((down) => {
    if (!open) return void down.destroy();
    const up = connect(Number(target.port), target.hostname);
    for (const [a, b] of [[down, up], [up, down]] as const) {
      sockets.add(a);
      a.on("error", () => b.destroy());
      a.on("close", () => {
        sockets.delete(a);
        b.destroy();
      });
    }
    down.pipe(up);
    up.pipe(down);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as { port: number }).port;
  return {
    url: `https://127.0.0.1:${port}`,
    cut() {
      open = false;
      for (const s of sockets) s.destroy();
    },
    restore() {
      open = true;
    },
    close: () => new Promise<void>((r) => {
      for (const s of sockets) s.destroy();
      server.close(() => r());
    }),
  };
}

test("a dropped watch resumes with growing back-off, and the relist removes what was deleted in the gap", async () => {
  const direct = fromKubeconfig(kubeconfig);
  const relay = await cuttableRelay(new URL(direct.server));
  const viaRelay = new KubeClient({ ...direct, server: relay.url });
  const retries: number[] = [];
  const log: Logger = { ...silentLogger, warn: (msg, f) => void (msg === "watch failed; retrying" && retries.push(Number(f?.retryInMs))), with: () => log };
  const informer = new Informer<ConfigMap>(viaRelay, path, {}, log);
  const deleted: string[] = [];
  informer.onChange((type, obj) => type === "deleted" && deleted.push(obj.metadata.name!));
  // What a handler reading the cache sees at each event: never the object deleted in the gap beside the one created in it.
  const mixed: string[] = [];
  informer.onChange((type, obj) => {
    if (informer.get(`${NS}/gone-in-gap`) && informer.get(`${NS}/new-in-gap`)) mixed.push(`${type} ${obj.metadata.name}`);
  });
  await client.create(path, { metadata: { name: "gone-in-gap" }, data: { n: "1" } });
  const stop = new AbortController();
  const running = informer.run(stop.signal);
  try {
    await eventually("cached", async () => (informer.get(`${NS}/gone-in-gap`) ? true : undefined));
    const relistsBefore = informer.relists;
    relay.cut();
    await client.delete(`${path}/gone-in-gap`);
    await client.create(path, { metadata: { name: "new-in-gap" }, data: { n: "1" } });
    // Some writes so that compaction moves past the informer's last version.
    for (let i = 0; i < 5; i++) await client.mergePatch(`${path}/churn`, { data: { n: `gap-${i}` } });
    await compactedPast((informer as unknown as { resourceVersion: string }).resourceVersion);
    await eventually("several retries", async () => (retries.length >= 4 ? true : undefined), { timeoutMs: 60_000 });
    assert.ok(informer.get(`${NS}/gone-in-gap`), "while cut off, the cache keeps what it had");
    // Each wait is drawn from [b/2, 3b/2) with b doubling from 200 ms: the floor grows.
    retries.slice(0, 4).forEach((ms, i) => assert.ok(ms >= 100 * 2 ** i, `retry ${i + 1} after ${ms} ms: ${retries.join(", ")}`));
    relay.restore();
    await eventually("the deletion in the gap is seen", async () => (informer.get(`${NS}/gone-in-gap`) ? undefined : true));
    assert.deepEqual(deleted, ["gone-in-gap"]);
    assert.ok(informer.get(`${NS}/new-in-gap`), "the relist found what was created in the gap");
    assert.deepEqual(mixed, [], "no handler saw the cache with both the deleted and the created object");
    assert.ok(informer.relists > relistsBefore, "the watch's version was compacted away: a relist found the deletion");
    assert.equal(informer.get(`${NS}/churn`)?.data?.n, "gap-4");
  } finally {
    stop.abort();
    await running;
    await client.delete(`${path}/new-in-gap`).catch(() => undefined);
    await viaRelay.close();
    await relay.close();
  }
});

test("a quiet informer keeps its object and tells no handler when a change leaves what it caches as it was", async () => {
  // The transform drops `beat`, as slimNode drops a node's heartbeat times.
  const withoutBeat = (cm: ConfigMap): ConfigMap => {
    const { beat: _beat, ...data } = cm.data ?? {};
    return { ...cm, metadata: { ...cm.metadata, managedFields: undefined } as ConfigMap["metadata"], data };
  };
  await client.create(path, { metadata: { name: "beating" }, data: { n: "1", beat: "0" } });
  const informer = new Informer<ConfigMap>(client, path, { fieldSelector: "metadata.name=beating" }, silentLogger, { transform: withoutBeat, quietUnchanged: true });
  const seen: string[] = [];
  informer.onChange((type, obj) => seen.push(`${type}:${obj.data?.n}`));
  const stop = new AbortController();
  const running = informer.run(stop.signal);
  try {
    await eventually("cached", async () => (informer.get(`${NS}/beating`) ? true : undefined));
    const first = informer.get(`${NS}/beating`)!;
    for (let i = 1; i <= 3; i++) await client.mergePatch(`${path}/beating`, { data: { beat: String(i) } });
    await eventually("the beats were watched", async () => (informer.unchangedSkipped >= 3 ? true : undefined)).catch((e) => { throw new Error(`${(e as Error).message}; seen ${seen.join(",")}; skipped ${informer.unchangedSkipped}`); });
    assert.equal(informer.get(`${NS}/beating`), first, "the cache kept the object it had");
    await client.mergePatch(`${path}/beating`, { data: { n: "2", beat: "4" } });
    await eventually("a kept field's change is told", async () => (informer.get(`${NS}/beating`)?.data?.n === "2" ? true : undefined));
    assert.deepEqual(seen, ["added:1", "modified:2"]);
    assert.equal(informer.unchangedSkipped, 3);
    assert.equal(informer.eventsHandled, 1, "the one change handed on (the first object came from the list)");
  } finally {
    stop.abort();
    await running;
    await client.delete(`${path}/beating`).catch(() => undefined);
  }
});

test("a watch and a list cut the members asked for from the server's text, and only those", async () => {
  const name = "unread";
  // Server-side apply: the server records managedFields for it; a label named like a cut member is a string and stays.
  await client.apply(`${path}/${name}`, { apiVersion: "v1", kind: "ConfigMap", metadata: { name, labels: { managedFields: "kept" } }, data: { n: "1" } }, "informer-test");
  const whole = await client.list<ConfigMap>(path, { fieldSelector: `metadata.name=${name}` });
  assert.ok(whole.items[0]!.metadata.managedFields?.length, "the server sends managedFields");
  const cut = await client.list<ConfigMap>(path, { fieldSelector: `metadata.name=${name}` }, { unread: ["managedFields"] });
  assert.equal(cut.items[0]!.metadata.managedFields, undefined);
  assert.deepEqual(cut.items[0]!.metadata.labels, { managedFields: "kept" });
  assert.deepEqual(cut.items[0]!.data, { n: "1" });

  const seen: ConfigMap[] = [];
  const stop = new AbortController();
  const watching = client.watch<ConfigMap>(path, { resourceVersion: cut.metadata.resourceVersion, fieldSelector: `metadata.name=${name}`, timeoutSeconds: 30 }, (e) => {
    seen.push(e.object);
    stop.abort();
  }, stop.signal, { unread: ["managedFields"] });
  await client.mergePatch(`${path}/${name}`, { data: { n: "2" } });
  await watching;
  assert.equal(seen.length, 1);
  assert.equal(seen[0]!.metadata.managedFields, undefined);
  assert.deepEqual(seen[0]!.metadata.labels, { managedFields: "kept" });
  assert.deepEqual(seen[0]!.data, { n: "2" });
});
