// What the upgrade's eviction steps list of a node's pods, against the real API server: the
// selectors leave out finished pods and gpuop's own driver and operand pods, and keep every
// other pod the steps may have to wait for or evict, in any namespace.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { attachCluster } from "./harness/cluster.ts";
import { ensureNamespace } from "./harness/policy.ts";
import { UpgradeExecutor } from "../src/controller/upgrade-controller.ts";
import { silentLogger } from "../src/kube/log.ts";
import type { KubeClient } from "../src/kube/client.ts";
import type { EventRecorder } from "../src/kube/events.ts";
import type { NodePod } from "../src/core/upgrade.ts";

const NS = "gpu-operator";
const WORK_NS = "node-pods-work";
// Not a kwok node: nothing runs or changes these pods, and the node exists, so they are not orphans.
const NODE = "node-pods-plain";
let client: KubeClient;

const pod = (namespace: string, name: string, labels: Record<string, string>, gpu = false) => ({
  metadata: { name, namespace, labels },
  spec: { nodeName: NODE, restartPolicy: "Never", containers: [{ name: "c", image: "busybox", ...(gpu ? { resources: { limits: { "nvidia.com/gpu": "1" } } } : {}) }] },
});

before(async () => {
  client = attachCluster(process.env.GPUOP_TEST_CLUSTER ?? "").client();
  await ensureNamespace(client, NS);
  await ensureNamespace(client, WORK_NS);
  await client.create("/api/v1/nodes", { metadata: { name: NODE } });
  const create = (p: ReturnType<typeof pod>) => client.create(`/api/v1/namespaces/${p.metadata.namespace}/pods`, p);
  await create(pod(WORK_NS, "training", { app: "train" }, true));
  await create(pod(WORK_NS, "web", { app: "web" }));
  await create(pod(WORK_NS, "done", { app: "batch" }, true));
  await create(pod(WORK_NS, "failed", { app: "batch" }, true));
  // gpuop's own: a driver pod and an operand pod in its namespace, and a pod of the operator's namespace that is neither.
  await create(pod(NS, "nvidia-driver-daemonset-x", { app: "nvidia-driver-daemonset" }));
  await create(pod(NS, "nvidia-device-plugin-daemonset-x", { app: "nvidia-device-plugin-daemonset", "gpuop.nvidia.com/operand": "devicePlugin" }));
  await create(pod(NS, "someone-elses", { app: "other" }, true));
  for (const [name, phase] of [["done", "Succeeded"], ["failed", "Failed"]]) {
    await client.mergePatch(`/api/v1/namespaces/${WORK_NS}/pods/${name}/status`, { status: { phase } });
  }
});

after(async () => {
  for (const ns of [WORK_NS, NS]) {
    for (const name of ["training", "web", "done", "failed", "nvidia-driver-daemonset-x", "nvidia-device-plugin-daemonset-x", "someone-elses"]) {
      await client.delete(`/api/v1/namespaces/${ns}/pods/${name}`, { query: { gracePeriodSeconds: 0 } }).catch(() => undefined);
    }
  }
  await client.delete(`/api/v1/namespaces/${WORK_NS}`).catch(() => undefined);
  await client.delete(`/api/v1/nodes/${NODE}`).catch(() => undefined);
});

test("a node's pods as an eviction step lists them: running pods of every namespace, not finished ones, not gpuop's own", async () => {
  const executor = new UpgradeExecutor({ client, events: {} as EventRecorder, log: silentLogger, namespace: NS });
  const pods = await (executor as unknown as { podsOn(node: string): Promise<NodePod[]> }).podsOn(NODE);
  const listed = pods.map((p) => `${p.namespace}/${p.name}${p.usesGpu ? " gpu" : ""}`).sort();
  assert.deepEqual(listed, [`${NS}/someone-elses gpu`, `${WORK_NS}/training gpu`, `${WORK_NS}/web`]);
});
