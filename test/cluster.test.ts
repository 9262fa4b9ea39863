// The local cluster is real: simulated GPU nodes become Ready, a DaemonSet's
// controller and the scheduler place pods on them, and kwok makes them Running.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { attachCluster, type LocalCluster } from "./harness/cluster.ts";
import { createGpuNode, deleteNodes } from "./harness/nodes.ts";
import { eventually } from "./harness/wait.ts";
import type { KubeClient } from "../src/kube/client.ts";
import type { Node, Pod } from "../src/kube/types.ts";

const nodes = [
  { name: "cluster-test-gpu-a", kernel: "5.15.0-69-generic", os: { id: "ubuntu", versionId: "22.04" } },
  { name: "cluster-test-gpu-b", kernel: "5.15.0-70-generic", os: { id: "ubuntu", versionId: "22.04" } },
  { name: "cluster-test-gpu-c", kernel: "6.8.0-1046-azure-fde", os: { id: "ubuntu", versionId: "24.04" } },
];
const ns = "cluster-test";
let cluster: LocalCluster;
let client: KubeClient;

before(async () => {
  const name = process.env.GPUOP_TEST_CLUSTER;
  assert.ok(name, "run through `make test` (test/run.ts), which starts the cluster");
  cluster = attachCluster(name);
  client = cluster.client();
  for (const n of nodes) await createGpuNode(client, n);
  await client.create("/api/v1/namespaces", { metadata: { name: ns } });
});

after(async () => {
  await client.delete(`/api/v1/namespaces/${ns}`).catch(() => undefined);
  await deleteNodes(client, nodes.map((n) => n.name));
  await client.close();
});

test("simulated GPU nodes carry NFD labels and nodeInfo, and kwok makes them Ready", async () => {
  for (const n of nodes) {
    const node = await eventually(`node ${n.name} Ready`, async () => {
      const got = await client.get<Node>(`/api/v1/nodes/${n.name}`);
      return got.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True") ? got : undefined;
    });
    assert.equal(node.metadata.labels?.["feature.node.kubernetes.io/pci-10de.present"], "true");
    assert.equal(node.metadata.labels?.["feature.node.kubernetes.io/kernel-version.full"], n.kernel);
    assert.equal(node.metadata.labels?.["feature.node.kubernetes.io/system-os_release.VERSION_ID"], n.os.versionId);
    assert.equal(node.status?.nodeInfo?.kernelVersion, n.kernel);
  }
});

test("a DaemonSet selecting GPU nodes gets one Running pod per node, seen by the API and by kubectl", async () => {
  await client.create(`/apis/apps/v1/namespaces/${ns}/daemonsets`, {
    metadata: { name: "probe" },
    spec: {
      selector: { matchLabels: { app: "probe" } },
      template: {
        metadata: { labels: { app: "probe" } },
        spec: {
          nodeSelector: { "feature.node.kubernetes.io/pci-10de.present": "true" },
          tolerations: [{ operator: "Exists" }],
          containers: [{ name: "c", image: "registry.invalid/probe:1" }],
        },
      },
    },
  });
  const pods = await eventually("three Running probe pods", async () => {
    const list = await client.list<Pod>(`/api/v1/namespaces/${ns}/pods`, { labelSelector: "app=probe" });
    const running = list.items.filter((p) => p.status?.phase === "Running");
    return running.length === nodes.length ? running : undefined;
  }, { timeoutMs: 120_000 });
  assert.deepEqual(pods.map((p) => p.spec?.nodeName).sort(), nodes.map((n) => n.name).sort());

  const { stdout } = await cluster.kubectl(["get", "pods", "-n", ns, "-l", "app=probe", "-o", "wide", "--no-headers"]);
  const lines = stdout.trim().split("\n");
  assert.equal(lines.length, 3, stdout);
  for (const n of nodes) assert.match(stdout, new RegExp(`Running.*${n.name}`));
});
