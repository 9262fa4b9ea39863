// Digests: with the image check on, each pool's tag is pinned to the digest the
// registry serves (`<repo>/driver:<tag>@sha256:…`), so a tag republished in the
// registry rolls the nodes like a version change, through the upgrade steps.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { attachCluster, type LocalCluster } from "./harness/cluster.ts";
import { createGpuNode, deleteNodes } from "./harness/nodes.ts";
import { startOperator, type OperatorProcess } from "./harness/operator.ts";
import { deletePolicies, driverDaemonSets, driverPods, ensureNamespace, getPolicy, installCrd, waitForNoDriverPods } from "./harness/policy.ts";
import { localClient, pushImage, startRegistry, type LocalRegistry } from "./harness/registry.ts";
import { eventually } from "./harness/wait.ts";
import type { KubeClient } from "../src/kube/client.ts";
import type { RegistryClient } from "../src/registry/client.ts";
import type { Node } from "../src/kube/types.ts";

const NS = "gpu-operator";
const TAG = "550.54.15-ubuntu22.04";
const names = ["dig-a", "dig-b"];
let cluster: LocalCluster;
let client: KubeClient;
let registry: LocalRegistry;
let push: RegistryClient;
let operator: OperatorProcess | undefined;

before(async () => {
  cluster = attachCluster(process.env.GPUOP_TEST_CLUSTER ?? "");
  client = cluster.client();
  await installCrd(cluster);
  await ensureNamespace(client, NS);
  await deletePolicies(client);
  registry = await startRegistry({});
  push = localClient(registry);
  for (const name of names) await createGpuNode(client, { name, kernel: "5.15.0-69-generic" });
  operator = await startOperator({ kubeconfig: cluster.kubeconfig, leaderElect: false, args: ["--plain-http-registries", registry.host, "--image-recheck-seconds", "1"] });
});

after(async () => {
  await operator?.stop();
  await deletePolicies(client).catch(() => undefined);
  await waitForNoDriverPods(client, { timeoutMs: 120_000 }).catch(() => undefined);
  await deleteNodes(client, names);
  await push?.close();
  await registry?.stop();
  await client.close();
});

/** Waits until every node is upgrade-done and runs `image`. */
async function allRun(image: string): Promise<void> {
  await eventually(`nodes run ${image}`, async () => {
    const pods = (await driverPods(client)).filter((p) => !p.metadata.deletionTimestamp);
    for (const n of names) {
      const node = await client.get<Node>(`/api/v1/nodes/${n}`);
      const mine = pods.filter((p) => p.spec?.nodeName === n);
      if (node.metadata.labels?.["nvidia.com/gpu-driver-upgrade-state"] !== "upgrade-done" || mine.length !== 1 || mine[0]!.spec?.containers?.[0]?.image !== image) {
        throw new Error(`${n}: ${node.metadata.labels?.["nvidia.com/gpu-driver-upgrade-state"]} ${mine.map((p) => p.spec?.containers?.[0]?.image).join(",")}`);
      }
    }
    return true;
  }, { timeoutMs: 180_000, intervalMs: 300 });
}

test("a pool's tag is pinned to the registry's digest, and a republished tag rolls every node", async () => {
  const first = await pushImage(push, "nvidia/driver", [TAG], { salt: "first build" });
  await cluster.kubectl(["apply", "-f", "-"], {
    input: JSON.stringify({
      apiVersion: "nvidia.com/v1",
      kind: "ClusterPolicy",
      metadata: { name: "cluster-policy" },
      spec: { driver: { repository: `${registry.host}/nvidia`, version: "550.54.15", upgradePolicy: { maxParallelUpgrades: 0, maxUnavailable: "100%" } } },
    }),
  });
  const pinned = `${registry.host}/nvidia/driver:${TAG}@${first.digest}`;
  await allRun(pinned);
  const [ds] = await driverDaemonSets(client);
  assert.equal((ds!.spec?.template?.spec?.containers as { image: string }[])[0]!.image, pinned);
  assert.equal((await getPolicy(client)).status?.pools?.[0]?.image, pinned);

  const second = await pushImage(push, "nvidia/driver", [TAG], { salt: "republished" });
  assert.notEqual(second.digest, first.digest);
  await allRun(`${registry.host}/nvidia/driver:${TAG}@${second.digest}`);
});
