// Write counts at install: each GPU node is labelled (GPU labels, the driver's
// and the operands' deploy labels, and driver pool together) by exactly one patch, observed server-side through a watch of
// the nodes, not through the operator's own counters.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { attachCluster, type LocalCluster } from "./harness/cluster.ts";
import { createGpuNode, deleteNodes } from "./harness/nodes.ts";
import { startOperator, type OperatorProcess } from "./harness/operator.ts";
import { deletePolicies, driverPods, ensureNamespace, installCrd, waitForDriverPods, waitForState } from "./harness/policy.ts";
import { eventually } from "./harness/wait.ts";
import type { KubeClient } from "../src/kube/client.ts";
import type { Node } from "../src/kube/types.ts";
import { canonicalJson } from "../src/core/diff.ts";

const NS = "gpu-operator";
let cluster: LocalCluster;
let client: KubeClient;
let operator: OperatorProcess | undefined;
const names = ["scale-a", "scale-b", "scale-c", "scale-d", "scale-e"];
// The labels the install sets: GPU node labels (the operands' deploy labels with the driver's, as NVIDIA's
// operator sets them) and the driver pool. Later steps write their own on purpose: the upgrade state
// (upgrade-done once the new driver is Ready) and the operands' gates.
const OPERAND_DEPLOY = ["container-toolkit", "device-plugin", "gpu-feature-discovery", "dcgm-exporter", "operator-validator"].map((k) => `nvidia.com/gpu.deploy.${k}`);
const INSTALL_LABELS = new Set(["nvidia.com/gpu.present", "nvidia.com/gpu.deploy.driver", ...OPERAND_DEPLOY, "gpuop.nvidia.com/driver-pool"]);
const gpuopLabels = (n: Node) => canonicalJson(Object.fromEntries(Object.entries(n.metadata.labels ?? {}).filter(([k]) => INSTALL_LABELS.has(k))));

before(async () => {
  cluster = attachCluster(process.env.GPUOP_TEST_CLUSTER ?? "");
  client = cluster.client();
  await installCrd(cluster);
  await ensureNamespace(client, NS);
  await deletePolicies(client);
  await eventually("no driver pods", async () => ((await driverPods(client)).length === 0 ? true : undefined));
});

after(async () => {
  await operator?.stop();
  await deletePolicies(client).catch(() => undefined);
  await deleteNodes(client, names);
  await client.close();
});

test("the install labels each GPU node with one patch: GPU labels, every deploy label and driver pool together", async () => {
  await deleteNodes(client, names);
  await eventually("old nodes gone", async () => ((await client.list<Node>("/api/v1/nodes")).items.some((n) => names.includes(n.metadata.name!)) ? undefined : true));
  // Policy first, operator second: the operator's first pass sees unlabelled nodes and a policy.
  await cluster.kubectl(["apply", "-f", "-"], {
    input: JSON.stringify({ apiVersion: "nvidia.com/v1", kind: "ClusterPolicy", metadata: { name: "cluster-policy" }, spec: { driver: { repository: "nvcr.io/nvidia", version: "570.86.15" } } }),
  });
  for (const [i, name] of names.entries()) await createGpuNode(client, { name, kernel: `5.15.0-${130 + (i % 2)}-generic` });

  // Every change of a node's labels, seen from a watch that starts before the operator does.
  const labelChanges = new Map<string, number>(names.map((n) => [n, 0]));
  const lastLabels = new Map<string, string>();
  const history: string[] = [];
  const { metadata } = await client.list<Node>("/api/v1/nodes");
  const watching = new AbortController();
  const watch = client.watch<Node>("/api/v1/nodes", { resourceVersion: metadata.resourceVersion, timeoutSeconds: 600 }, (e) => {
    const name = e.object.metadata?.name ?? "";
    if (!labelChanges.has(name) || e.type === "BOOKMARK") return;
    const labels = gpuopLabels(e.object);
    const prev = lastLabels.get(name);
    if (prev !== undefined && prev !== labels) {
      labelChanges.set(name, labelChanges.get(name)! + 1);
      history.push(`${name}: ${prev} -> ${labels}`);
    }
    lastLabels.set(name, labels);
  }, watching.signal).catch(() => undefined);
  // The initial list holds every node as created: the baseline of its labels.
  for (const n of (await client.list<Node>("/api/v1/nodes")).items) if (labelChanges.has(n.metadata.name!)) lastLabels.set(n.metadata.name!, gpuopLabels(n));

  operator = await startOperator({ kubeconfig: cluster.kubeconfig, leaderElect: false });
  await waitForDriverPods(client, names.length);
  await waitForState(client, "ready");
  const labelled = (await client.list<Node>("/api/v1/nodes")).items.filter((n) => names.includes(n.metadata.name!));
  for (const n of labelled) {
    assert.equal(n.metadata.labels?.["nvidia.com/gpu.present"], "true");
    assert.equal(n.metadata.labels?.["nvidia.com/gpu.deploy.driver"], "true");
    assert.ok(n.metadata.labels?.["gpuop.nvidia.com/driver-pool"], `${n.metadata.name} has a driver pool`);
    for (const k of OPERAND_DEPLOY) assert.equal(n.metadata.labels?.[k], "true", `${n.metadata.name}: ${k}`);
  }
  watching.abort();
  await watch;
  assert.deepEqual(Object.fromEntries(labelChanges), Object.fromEntries(names.map((n) => [n, 1])), history.join("\n"));
});
