// What a cluster moving from NVIDIA's GPU Operator has: NVIDIA's ClusterPolicy CRD, NVIDIA's
// sample ClusterPolicy (no driver version), and nodes Node Feature Discovery never labelled
// (found by a managed cloud's accelerator label or a configured selector). gpuop serves them:
// the operator's default driver version, kernel and OS from status.nodeInfo, and exactly one
// driver pod per node.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parse as parseYaml } from "yaml";
import { attachCluster, type LocalCluster } from "./harness/cluster.ts";
import { createGpuNode, deleteNodes, type SimulatedGpuNode } from "./harness/nodes.ts";
import { startOperator, type OperatorProcess } from "./harness/operator.ts";
import { deletePolicies, driverDaemonSets, ensureNamespace, getPolicy, installCrd, waitForDriverPods, waitForNoDriverPods } from "./harness/policy.ts";
import { repoRoot } from "./harness/tools.ts";
import { eventually } from "./harness/wait.ts";
import type { KubeClient } from "../src/kube/client.ts";
import type { DaemonSet, Node } from "../src/kube/types.ts";

const NS = "gpu-operator";
const fixtures = join(repoRoot, "test/fixtures/nvidia");
const samplePath = join(fixtures, "v1_clusterpolicy.yaml");
const sampleName = (parseYaml(readFileSync(samplePath, "utf8")) as { metadata: { name: string } }).metadata.name;
const DEFAULT_VERSION = "570.86.15";

const nodes: SimulatedGpuNode[] = [
  { name: "nv-nfd", kernel: "5.15.0-69-generic", os: { id: "ubuntu", versionId: "22.04" } },
  // GKE: no NFD, the accelerator label marks the GPU node.
  { name: "nv-gke", kernel: "5.15.0-1048-gke", os: { id: "ubuntu", versionId: "22.04" }, withoutNfdLabels: true, labels: { "cloud.google.com/gke-accelerator": "nvidia-l4" } },
  // Found only through the operator's --gpu-node-selector.
  { name: "nv-selected", kernel: "6.8.0-1046-azure-fde", os: { id: "ubuntu", versionId: "24.04" }, withoutNfdLabels: true, labels: { "example.com/gpu": "yes" } },
];

let cluster: LocalCluster;
let client: KubeClient;
let operator: OperatorProcess | undefined;

before(async () => {
  cluster = attachCluster(process.env.GPUOP_TEST_CLUSTER ?? "");
  client = cluster.client();
  await deletePolicies(client).catch(() => undefined);
  await eventually("driver DaemonSets gone", async () => ((await driverDaemonSets(client).catch(() => [])).length === 0 ? true : undefined));
  // NVIDIA's CRD replaces gpuop's for this file (same field manager as installCrd, which restores it).
  await cluster.kubectl(["apply", "--server-side", "--force-conflicts", "-f", join(fixtures, "nvidia.com_clusterpolicies.yaml")]);
  // Polled rather than `kubectl wait`, which fails while a new CRD has no conditions yet.
  await eventually("NVIDIA's CRD Established", async () => {
    const crd = await client.get<{ status?: { conditions?: { type: string; status: string }[] } }>("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/clusterpolicies.nvidia.com");
    return crd.status?.conditions?.some((c) => c.type === "Established" && c.status === "True") ? true : undefined;
  });
  await ensureNamespace(client, NS);
  await deleteNodes(client, nodes.map((n) => n.name));
  for (const n of nodes) await createGpuNode(client, n);
  operator = await startOperator({ kubeconfig: cluster.kubeconfig, leaderElect: false, args: ["--no-image-check", "--default-driver-version", DEFAULT_VERSION, "--gpu-node-selector", "example.com/gpu=yes"] });
});

after(async () => {
  await operator?.stop();
  await deletePolicies(client).catch(() => undefined);
  await waitForNoDriverPods(client).catch(() => undefined);
  await deleteNodes(client, nodes.map((n) => n.name));
  await installCrd(cluster);
  await client.close();
});

const image = (ds: DaemonSet) => ((ds.spec?.template?.spec?.containers ?? []) as { image: string }[])[0]?.image;

test("NVIDIA's sample ClusterPolicy on NVIDIA's CRD: default driver version, nodes without NFD served, one driver pod per node", async () => {
  await cluster.kubectl(["apply", "-f", samplePath]);
  const pods = await waitForDriverPods(client, nodes.length);
  assert.deepEqual(pods.map((p) => p.spec?.nodeName), nodes.map((n) => n.name).sort(), "one driver pod on each node");

  const dss = await driverDaemonSets(client);
  assert.deepEqual(dss.map((d) => [d.metadata.name, image(d)]).sort(), [
    ["nvidia-driver-daemonset-ubuntu22.04", `nvcr.io/nvidia/driver:${DEFAULT_VERSION}-ubuntu22.04`],
    ["nvidia-driver-daemonset-ubuntu24.04", `nvcr.io/nvidia/driver:${DEFAULT_VERSION}-ubuntu24.04`],
  ]);
  // Every node matches exactly one driver DaemonSet's nodeSelector.
  for (const n of nodes) {
    const node = await client.get<Node>(`/api/v1/nodes/${n.name}`);
    const labels = node.metadata.labels ?? {};
    const selecting = dss.filter((d) => Object.entries((d.spec?.template?.spec as { nodeSelector: Record<string, string> }).nodeSelector).every(([k, v]) => labels[k] === v));
    assert.equal(selecting.length, 1, `${n.name}: ${selecting.map((d) => d.metadata.name).join(", ")}`);
    assert.equal(labels["nvidia.com/gpu.present"], "true", n.name);
  }

  const policy = await eventually("the sample policy ready", async () => {
    const p = await getPolicy(client, sampleName);
    return p.status?.state === "ready" && p.status.conditions?.some((c) => c.type === "Ready" && c.status === "True" && c.observedGeneration === p.metadata.generation) ? p : undefined;
  });
  assert.equal(policy.spec?.driver?.version, undefined, "the stored policy still names no version");

  // NVIDIA's CRD has no status.pools: the pruned status must not make every reconcile write it again.
  const reconciles = async () => Number(/^gpuop_reconcile_total\{result="success"\} (\d+)$/m.exec(await operator!.metrics())?.[1] ?? 0);
  // Each label change makes one reconcile; once the policy has settled, one with nothing to change.
  const touch = async (value: string) => {
    const before = { writes: await operator!.writes(), reconciles: await reconciles() };
    await cluster.kubectl(["label", "--overwrite", "node", "nv-nfd", `example.com/touched=${value}`]);
    await eventually("a reconcile after the label change", async () => ((await reconciles()) > before.reconciles ? true : undefined));
    return before.writes;
  };
  let i = 0;
  // The operands reach each node in steps (gates open as pods become Ready): settled means three quiet touches in a row.
  let quiet = 0;
  await eventually("writes to settle", async () => {
    quiet = (await touch(String(i++))) === (await operator!.writes()) ? quiet + 1 : 0;
    return quiet >= 3 ? true : undefined;
  });
  const writes = await touch("last");
  assert.equal(await operator!.writes(), writes, "a reconcile with nothing to change writes nothing");
});

test("without a default driver version the sample policy is refused with a message naming the flag, and the drivers stay", async () => {
  await operator?.stop();
  operator = await startOperator({ kubeconfig: cluster.kubeconfig, leaderElect: false, args: ["--no-image-check", "--gpu-node-selector", "example.com/gpu=yes"] });
  const before = (await driverDaemonSets(client)).map((d) => `${d.metadata.name}@${d.metadata.uid}`).sort();
  await eventually("VersionMissing", async () => {
    const p = await getPolicy(client, sampleName);
    const error = p.status?.conditions?.find((c) => c.type === "Error" && c.status === "True");
    return error?.reason === "VersionMissing" && /--default-driver-version/.test(error.message) ? true : undefined;
  });
  assert.deepEqual((await driverDaemonSets(client)).map((d) => `${d.metadata.name}@${d.metadata.uid}`).sort(), before);
  assert.equal((await waitForDriverPods(client, nodes.length)).length, nodes.length);
});
