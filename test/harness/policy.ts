import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { LocalCluster } from "./cluster.ts";
import { repoRoot } from "./tools.ts";
import { eventually } from "./wait.ts";
import type { KubeClient } from "../../src/kube/client.ts";
import type { ClusterPolicy } from "../../src/core/policy.ts";
import type { DaemonSet, Pod } from "../../src/kube/types.ts";

export const crdPath = join(repoRoot, "deployments/gpu-operator/crds/nvidia.com_clusterpolicies.yaml");
export const examplePolicy = readFileSync(join(repoRoot, "deployments/gpu-operator/examples/cluster-policy.yaml"), "utf8");
export const POLICY_PATH = "/apis/nvidia.com/v1/clusterpolicies";

export async function installCrd(cluster: LocalCluster): Promise<void> {
  await cluster.kubectl(["apply", "--server-side", "-f", crdPath]);
  // Right after the apply the CRD may have no conditions yet, which kubectl wait reports as an error.
  await eventually("the CRD established", () => cluster.kubectl(["wait", "--for=condition=Established", "crd/clusterpolicies.nvidia.com", "--timeout=60s"]).then(() => true), { timeoutMs: 90_000 });
}

export async function ensureNamespace(client: KubeClient, name: string): Promise<void> {
  await client.create("/api/v1/namespaces", { metadata: { name } }).catch((e: unknown) => {
    if ((e as { status?: number }).status !== 409) throw e;
  });
}

export const getPolicy = (client: KubeClient, name = "cluster-policy") => client.get<ClusterPolicy>(`${POLICY_PATH}/${name}`);

export async function deletePolicies(client: KubeClient): Promise<void> {
  const { items } = await client.list<ClusterPolicy>(POLICY_PATH);
  for (const p of items) await client.delete(`${POLICY_PATH}/${p.metadata.name}`).catch(() => undefined);
  await eventually("policies deleted", async () => ((await client.list(POLICY_PATH)).items.length === 0 ? true : undefined));
}

export async function driverDaemonSets(client: KubeClient, ns = "gpu-operator"): Promise<DaemonSet[]> {
  return (await client.list<DaemonSet>(`/apis/apps/v1/namespaces/${ns}/daemonsets`, { labelSelector: "app=nvidia-driver-daemonset" })).items.filter((d) => !d.metadata.deletionTimestamp);
}

export async function driverPods(client: KubeClient, ns = "gpu-operator"): Promise<Pod[]> {
  return (await client.list<Pod>(`/api/v1/namespaces/${ns}/pods`, { labelSelector: "app=nvidia-driver-daemonset" })).items;
}

/** Waits until no driver pod is left in `ns` (terminating ones included), e.g. before deleting their nodes. */
export async function waitForNoDriverPods(client: KubeClient, opts: { ns?: string; timeoutMs?: number } = {}): Promise<void> {
  await eventually("driver pods gone", async () => ((await driverPods(client, opts.ns)).length === 0 ? true : undefined), opts.timeoutMs !== undefined ? { timeoutMs: opts.timeoutMs } : undefined);
}

/** Waits until exactly `expected` driver pods are Running and no other driver pod exists; returns them sorted by node. */
export async function waitForDriverPods(client: KubeClient, expected: number, match: (p: Pod) => boolean = () => true, timeoutMs = 120_000): Promise<Pod[]> {
  return eventually(`${expected} Running driver pods`, async () => {
    const pods = await driverPods(client);
    const running = pods.filter((p) => p.status?.phase === "Running" && !p.metadata.deletionTimestamp);
    if (pods.length !== expected || running.length !== expected || !running.every(match)) {
      throw new Error(pods.map((p) => `${p.metadata.name}@${p.spec?.nodeName}:${p.status?.phase}${p.metadata.deletionTimestamp ? "(terminating)" : ""}`).join(", ") || "no pods");
    }
    return running.sort((a, b) => (a.spec?.nodeName ?? "").localeCompare(b.spec?.nodeName ?? ""));
  }, { timeoutMs });
}

export async function waitForState(client: KubeClient, state: string, name = "cluster-policy", timeoutMs = 120_000): Promise<ClusterPolicy> {
  return eventually(`policy ${name} state ${state}`, async () => {
    const p = await getPolicy(client, name);
    if (p.status?.state !== state || p.status.observedGeneration !== p.metadata.generation) throw new Error(JSON.stringify(p.status));
    return p;
  }, { timeoutMs });
}
