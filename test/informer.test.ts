// The watch machinery against the real API server: a watch from a resource
// version the server no longer keeps ends in 410 Gone, and the informer then
// relists instead of stopping; ordinary changes stream into its cache.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { attachCluster } from "./harness/cluster.ts";
import { eventually } from "./harness/wait.ts";
import { isGone, type KubeClient } from "../src/kube/client.ts";
import { Informer } from "../src/kube/informer.ts";
import { silentLogger } from "../src/kube/log.ts";
import type { KubeObject } from "../src/kube/types.ts";

const NS = "informer-test";
const path = `/api/v1/namespaces/${NS}/configmaps`;
let client: KubeClient;
let staleVersion = "";

interface ConfigMap extends KubeObject {
  data?: Record<string, string>;
}

before(async () => {
  client = attachCluster(process.env.GPUOP_TEST_CLUSTER ?? "").client();
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

test("the informer relists after 410 Gone and then follows changes", async () => {
  const informer = new Informer<ConfigMap>(client, path, {}, silentLogger);
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
    assert.equal(informer.relists, 1, "one relist, then the watch resumes");
  } finally {
    stop.abort();
    await running;
  }
});
