// The operator's security options against the real cluster: with an admin-only GPU node label,
// a node that labels itself as a GPU node gets no labels and no driver pod; a policy that sets
// LD_PRELOAD in the driver's env, or names an image outside the allowed repositories, becomes
// notReady with a reason that says what to change, and the running drivers stay as they are.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { attachCluster, type LocalCluster } from "./harness/cluster.ts";
import { createGpuNode, deleteNodes } from "./harness/nodes.ts";
import { startOperator, type OperatorProcess } from "./harness/operator.ts";
import { deletePolicies, driverDaemonSets, ensureNamespace, installCrd, POLICY_PATH, waitForDriverPods, waitForState } from "./harness/policy.ts";
import { eventually } from "./harness/wait.ts";
import type { KubeClient } from "../src/kube/client.ts";
import type { DaemonSet, Node } from "../src/kube/types.ts";

const NS = "gpu-operator";
const ADMIN_LABEL = "node-restriction.kubernetes.io/nvidia-gpu";
const NODES = ["limits-admitted", "limits-self-labelled"];
let cluster: LocalCluster;
let client: KubeClient;
let operator: OperatorProcess | undefined;

before(async () => {
  cluster = attachCluster(process.env.GPUOP_TEST_CLUSTER ?? "");
  client = cluster.client();
  await installCrd(cluster);
  await ensureNamespace(client, NS);
  await deletePolicies(client);
  await createGpuNode(client, { name: NODES[0]!, kernel: "5.15.0-69-generic", labels: { [ADMIN_LABEL]: "yes" } });
  // Everything a GPU node has, and labels it could set on itself, but not the admin's label.
  await createGpuNode(client, { name: NODES[1]!, kernel: "5.15.0-69-generic", labels: { "nvidia.com/gpu.deploy.driver": "true", "nvidia.com/gpu.present": "true" } });
  operator = await startOperator({
    kubeconfig: cluster.kubeconfig,
    leaderElect: false,
    args: ["--no-image-check", "--allowed-image-repositories", "nvcr.io/nvidia,registry.example.com:5000", "--gpu-node-label", `${ADMIN_LABEL}=yes`],
  });
  await client.create(POLICY_PATH, {
    apiVersion: "nvidia.com/v1",
    kind: "ClusterPolicy",
    metadata: { name: "cluster-policy" },
    spec: { driver: { repository: "nvcr.io/nvidia", image: "driver", version: "550.54.15", env: [{ name: "NVIDIA_DEBUG", value: "1" }] } },
  });
});

after(async () => {
  await operator?.stop();
  await deletePolicies(client).catch(() => undefined);
  await deleteNodes(client, NODES);
  await client.close();
});

const selector = (ds: DaemonSet) => (ds.spec?.template?.spec as { nodeSelector: Record<string, string> }).nodeSelector;

describe("admin-only GPU node label", () => {
  test("only the node with the admin's label gets a driver pod, and every DaemonSet requires the label", async () => {
    const pods = await waitForDriverPods(client, 1);
    assert.equal(pods[0]?.spec?.nodeName, NODES[0]);
    const [ds, ...rest] = await driverDaemonSets(client);
    assert.equal(rest.length, 0);
    assert.equal(selector(ds!)[ADMIN_LABEL], "yes");
    await waitForState(client, "ready");
    const self = await client.get<Node>(`/api/v1/nodes/${NODES[1]}`);
    assert.equal(self.metadata.labels?.["gpuop.nvidia.com/driver-pool"], undefined, "the self-labelled node was not assigned a pool");
  });
});

describe("refused policies leave the drivers alone", () => {
  const snapshot = async () => (await driverDaemonSets(client)).map((d) => ({ name: d.metadata.name, generation: d.metadata.generation, selector: selector(d) }));

  for (const c of [
    { name: "LD_PRELOAD in spec.driver.env", patch: [{ op: "add", path: "/spec/driver/env/-", value: { name: "LD_PRELOAD", value: "/host/tmp/x.so" } }], reason: "ForbiddenEnv", message: /spec\.driver\.env sets "LD_PRELOAD".*remove it from spec\.driver\.env/ },
    { name: "an image outside the allowed repositories", patch: [{ op: "replace", path: "/spec/driver/repository", value: "evil.example.com/nvidia" }], reason: "ImageNotAllowed", message: /evil\.example\.com\/nvidia\/driver.*outside the operator's allowed image repositories/ },
  ]) {
    test(c.name, async () => {
      await waitForState(client, "ready");
      const before = await snapshot();
      const original = await client.get<{ spec: unknown }>(`${POLICY_PATH}/cluster-policy`);
      await cluster.kubectl(["patch", "clusterpolicy/cluster-policy", "--type=json", `-p=${JSON.stringify(c.patch)}`]);
      const policy = await waitForState(client, "notReady");
      const error = policy.status?.conditions?.find((x) => x.type === "Error");
      assert.equal(error?.reason, c.reason);
      assert.match(error?.message ?? "", c.message);
      assert.deepEqual(await snapshot(), before, "DaemonSets unchanged");
      assert.equal((await waitForDriverPods(client, 1)).length, 1);
      await cluster.kubectl(["patch", "clusterpolicy/cluster-policy", "--type=merge", `-p=${JSON.stringify({ spec: original.spec })}`]);
      await eventually("policy ready again", async () => ((await waitForState(client, "ready")) ? true : undefined));
    });
  }
});
