// The operator against the real cluster: the seed's enable and disable flows
// with its exact kubectl commands, mixed clusters, kernel upgrades, drift,
// invalid policies, restarts, and a quiet steady state.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { attachCluster, type LocalCluster } from "./harness/cluster.ts";
import { createGpuNode, deleteNodes, type SimulatedGpuNode } from "./harness/nodes.ts";
import { startOperator, type OperatorProcess } from "./harness/operator.ts";
import { crdPath, deletePolicies, driverDaemonSets, driverPods, ensureNamespace, examplePolicy, getPolicy, installCrd, POLICY_PATH, waitForDriverPods, waitForState, waitForNoDriverPods } from "./harness/policy.ts";
import { eventually } from "./harness/wait.ts";
import { repoRoot } from "./harness/tools.ts";
import { execFile } from "node:child_process";
import { join } from "node:path";
import { promisify } from "node:util";
import type { KubeClient } from "../src/kube/client.ts";
import type { DaemonSet } from "../src/kube/types.ts";

const NS = "gpu-operator";
let cluster: LocalCluster;
let client: KubeClient;
let operator: OperatorProcess | undefined;
let nodeNames: string[] = [];

async function setNodes(nodes: SimulatedGpuNode[]): Promise<void> {
  // Remove the drivers first: pods on a deleted node linger until pod GC's 40-second quarantine ends.
  await deletePolicies(client);
  await waitForNoDriverPods(client);
  await deleteNodes(client, nodeNames);
  nodeNames = nodes.map((n) => n.name);
  for (const n of nodes) await createGpuNode(client, n);
}

async function resetPolicy(yaml = examplePolicy): Promise<void> {
  await deletePolicies(client);
  await eventually("driver DaemonSets gone", async () => ((await driverDaemonSets(client)).length === 0 ? true : undefined));
  await cluster.kubectl(["apply", "-f", "-"], { input: yaml });
}

const image = (ds: DaemonSet) => ((ds.spec?.template?.spec?.containers ?? []) as { image: string }[])[0]?.image;
const kubectlPods = async () => (await cluster.kubectl(["get", "pods", "-l", "app=nvidia-driver-daemonset", "-n", NS, "--no-headers", "-o", "custom-columns=NAME:.metadata.name"])).stdout.trim().split("\n").filter(Boolean);

before(async () => {
  cluster = attachCluster(process.env.GPUOP_TEST_CLUSTER ?? "");
  client = cluster.client();
  await installCrd(cluster);
  await ensureNamespace(client, NS);
  operator = await startOperator({ kubeconfig: cluster.kubeconfig });
});

after(async () => {
  await operator?.stop();
  await deletePolicies(client).catch(() => undefined);
  await deleteNodes(client, nodeNames);
  await client.close();
});

const ubuntu2204 = { id: "ubuntu", versionId: "22.04" };
const ubuntu2404 = { id: "ubuntu", versionId: "24.04" };

describe("the seed's flows on Ubuntu 22.04 generic kernels", () => {
  before(async () => {
    await setNodes([
      { name: "seed-a", kernel: "5.15.0-69-generic", os: ubuntu2204 },
      { name: "seed-b", kernel: "5.15.0-69-generic", os: ubuntu2204 },
      { name: "seed-c", kernel: "5.15.0-70-generic", os: ubuntu2204 },
    ]);
    await resetPolicy();
  });

  test("conventional install: one DaemonSet for the OS, pod names without a kernel version", async () => {
    const pods = await waitForDriverPods(client, 3);
    for (const p of pods) assert.doesNotMatch(p.metadata.name!, /5\.15\.0/);
    const [ds, ...rest] = await driverDaemonSets(client);
    assert.equal(rest.length, 0);
    assert.equal(image(ds!), "nvcr.io/nvidia/driver:550.54.15-ubuntu22.04");
    assert.equal(ds!.metadata.labels?.["nvidia.com/precompiled"], "false");
    await waitForState(client, "ready");
  });

  test("enabling precompiled after install with the seed's kubectl patch gives one DaemonSet per kernel", async () => {
    const { stdout } = await cluster.kubectl([
      "patch", "clusterpolicy/cluster-policy", "--type=json",
      '-p=[{"op":"replace", "path":"/spec/driver/usePrecompiled", "value":true}, {"op":"replace", "path":"/spec/driver/version", "value":"525"}]',
    ]);
    assert.equal(stdout.trim(), "clusterpolicy.nvidia.com/cluster-policy patched");
    await waitForDriverPods(client, 3, (p) => /5\.15\.0-(69|70)-generic/.test(p.metadata.name!));
    const names = await kubectlPods();
    assert.equal(names.length, 3);
    for (const n of names) assert.match(n, /^nvidia-driver-daemonset-5\.15\.0-(69|70)-generic-ubuntu22\.04-/);
    const images = (await driverDaemonSets(client)).map(image).sort();
    assert.deepEqual(images, ["nvcr.io/nvidia/driver:525-5.15.0-69-generic-ubuntu22.04", "nvcr.io/nvidia/driver:525-5.15.0-70-generic-ubuntu22.04"]);
    const policy = await waitForState(client, "ready");
    assert.equal(policy.status?.pools?.length, 2);
  });

  test("disabling precompiled with the seed's kubectl patch returns to conventional pods", async () => {
    const { stdout } = await cluster.kubectl(["patch", "clusterpolicy/cluster-policy", "--type=json", '-p=[{"op": "replace", "path": "/spec/driver/usePrecompiled", "value":false}]']);
    assert.equal(stdout.trim(), "clusterpolicy.nvidia.com/cluster-policy patched");
    await waitForDriverPods(client, 3, (p) => !/5\.15\.0/.test(p.metadata.name!));
    for (const n of await kubectlPods()) assert.doesNotMatch(n, /5\.15\.0/);
    assert.equal((await driverDaemonSets(client)).length, 1);
    // The branch left in version works as NVIDIA's does, with a Warning Event saying what to set.
    await eventually("a ConventionalVersionIsBranch event", async () => {
      const events = await client.list<{ reason: string; type: string; involvedObject: { name: string } }>("/api/v1/namespaces/default/events");
      return events.items.some((e) => e.reason === "ConventionalVersionIsBranch" && e.type === "Warning" && e.involvedObject.name === "cluster-policy") ? true : undefined;
    });
  });
});

describe("a mixed cluster: three kernels, two Ubuntu releases", () => {
  before(async () => {
    await setNodes([
      { name: "mixed-a", kernel: "5.15.0-1103-aws", os: ubuntu2204 },
      { name: "mixed-b", kernel: "6.8.0-1046-azure-fde", os: ubuntu2404 },
      { name: "mixed-c", kernel: "6.8.0-1047-oracle", os: ubuntu2404 },
      { name: "mixed-d", kernel: "6.8.0-1047-oracle", os: ubuntu2404 },
    ]);
    await resetPolicy();
  });

  test("conventional mode gets one DaemonSet per OS release, each with its OS tag", async () => {
    await waitForDriverPods(client, 4);
    const images = (await driverDaemonSets(client)).map(image).sort();
    assert.deepEqual(images, ["nvcr.io/nvidia/driver:550.54.15-ubuntu22.04", "nvcr.io/nvidia/driver:550.54.15-ubuntu24.04"]);
  });

  test("precompiled mode gets one DaemonSet per kernel and OS with the right images", async () => {
    await cluster.kubectl(["patch", "clusterpolicy/cluster-policy", "--type=json", '-p=[{"op":"replace","path":"/spec/driver/usePrecompiled","value":true},{"op":"replace","path":"/spec/driver/version","value":"580"}]']);
    await waitForDriverPods(client, 4, (p) => /-(aws|azure-fde|oracle)-/.test(p.metadata.name!));
    const images = (await driverDaemonSets(client)).map(image).sort();
    assert.deepEqual(images, [
      "nvcr.io/nvidia/driver:580-5.15.0-1103-aws-ubuntu22.04",
      "nvcr.io/nvidia/driver:580-6.8.0-1046-azure-fde-ubuntu24.04",
      "nvcr.io/nvidia/driver:580-6.8.0-1047-oracle-ubuntu24.04",
    ]);
    await waitForState(client, "ready");
  });

  test("gpuop status shows the policy state and each node's kernel, mode, DaemonSet, image and pod", async () => {
    const run = (args: string[]) => promisify(execFile)(join(repoRoot, "bin", "gpuop"), args, { env: { ...process.env, KUBECONFIG: cluster.kubeconfig } });
    const json = JSON.parse((await run(["status", "-o", "json"])).stdout) as { policy: { state: string; usePrecompiled: boolean }; nodes: { node: string; kernel: string; mode: string; daemonSet: string; image: string; pod: string; phase: string }[] };
    assert.equal(json.policy.state, "ready");
    assert.equal(json.policy.usePrecompiled, true);
    const b = json.nodes.find((n) => n.node === "mixed-b")!;
    assert.equal(b.kernel, "6.8.0-1046-azure-fde");
    assert.equal(b.mode, "precompiled");
    assert.equal(b.daemonSet, "nvidia-driver-daemonset-6.8.0-1046-azure-fde-ubuntu24.04");
    assert.equal(b.image, "nvcr.io/nvidia/driver:580-6.8.0-1046-azure-fde-ubuntu24.04");
    assert.match(b.pod, /^nvidia-driver-daemonset-6\.8\.0-1046-azure-fde-ubuntu24\.04-/);
    assert.equal(b.phase, "Running");
    const table = (await run(["status"])).stdout;
    assert.match(table, /state: ready/);
    assert.match(table, /mixed-c\s+6\.8\.0-1047-oracle\s+ubuntu24\.04\s+precompiled/);
  });

  test("a node's kernel upgrade moves it to the new kernel's pool, and the emptied pool goes away", async () => {
    await client.mergePatch("/api/v1/nodes/mixed-a", { metadata: { labels: { "feature.node.kubernetes.io/kernel-version.full": "5.15.0-1104-aws" } } });
    const pods = await waitForDriverPods(client, 4, (p) => !p.metadata.name!.includes("5.15.0-1103-aws"));
    assert.match(pods.find((p) => p.spec?.nodeName === "mixed-a")!.metadata.name!, /5\.15\.0-1104-aws/);
    await eventually("old pool removed", async () => {
      const names = (await driverDaemonSets(client)).map((d) => d.metadata.name!);
      return names.some((n) => n.includes("1103")) ? undefined : names;
    });
  });

  test("a DaemonSet edited or deleted by hand is restored", async () => {
    const [ds] = (await driverDaemonSets(client)).filter((d) => d.metadata.name!.includes("oracle"));
    const name = ds!.metadata.name!;
    const want = image(ds!);
    await cluster.kubectl(["-n", NS, "set", "image", `daemonset/${name}`, "nvidia-driver-ctr=example.invalid/evil:1"]);
    await eventually("image restored", async () => (image(await client.get<DaemonSet>(`/apis/apps/v1/namespaces/${NS}/daemonsets/${name}`)) === want ? true : undefined));
    const uid = ds!.metadata.uid;
    await cluster.kubectl(["-n", NS, "delete", "daemonset", name, "--wait=false"]);
    await eventually("DaemonSet recreated", async () => {
      const got = await client.get<DaemonSet>(`/apis/apps/v1/namespaces/${NS}/daemonsets/${name}`).catch(() => undefined);
      return got && got.metadata.uid !== uid && !got.metadata.deletionTimestamp ? got : undefined;
    });
  });

  test("with nothing changed, the operator makes no write requests", async () => {
    await waitForState(client, "ready");
    await waitForDriverPods(client, 4);
    // The previous test recreated a DaemonSet: wait until every DaemonSet's status has caught up
    // with it and the operator's queue is empty, then watch a quiet period.
    await eventually("DaemonSets settled and the work queue empty", async () => {
      const sets = await driverDaemonSets(client);
      const settled = sets.every((d) => {
        const st = d.status as { observedGeneration?: number; desiredNumberScheduled?: number; numberReady?: number } | undefined;
        return st !== undefined && st.observedGeneration === d.metadata.generation && st.desiredNumberScheduled === st.numberReady;
      });
      if (!settled) throw new Error(JSON.stringify(sets.map((d) => [d.metadata.name, d.metadata.generation, d.status])));
      const depth = /^gpuop_workqueue_depth (\d+)$/m.exec(await operator!.metrics())?.[1];
      return depth === "0" ? true : undefined;
    });
    // A status update that only moves counts may be held back up to 10 s (StatusWrites'
    // coalescing) and land after the queue is empty: the quiet period starts once a whole
    // interval passed without a write.
    let before = await operator!.writes();
    for (let i = 0; i < 6; i++) {
      await new Promise((r) => setTimeout(r, 11_000));
      const now = await operator!.writes();
      if (now === before) break;
      before = now;
    }
    assert.ok(before > 0, "the operator's write counter is exported (it has written before)");
    await new Promise((r) => setTimeout(r, 5000));
    assert.equal(await operator!.writes(), before, "writes during a quiet period");
  });
});

describe("a mode switch rolls: nodes move maxUnavailable at a time", () => {
  before(async () => {
    // 4 nodes: the default 25% would allow 1 at a time, so a budget of 2 shows the policy's value is used
    // (maxParallelUpgrades 0: pool moves count against it too, and its default is 1).
    await setNodes(["a", "b", "c", "d"].map((x) => ({ name: `roll-${x}`, kernel: "5.15.0-69-generic", os: ubuntu2204 })));
    await resetPolicy(examplePolicy.replace("imagePullPolicy: IfNotPresent", "imagePullPolicy: IfNotPresent\n    upgradePolicy:\n      maxUnavailable: 2\n      maxParallelUpgrades: 0"));
    await waitForDriverPods(client, 4);
    await waitForState(client, "ready");
  });

  test("with maxUnavailable 2, the status shows the other two nodes waiting while two change driver", async () => {
    const messages: string[] = [];
    const stop = new AbortController();
    const watching = client.watch<{ metadata: { name: string }; status?: { conditions?: { type: string; message: string }[] } }>(
      POLICY_PATH, { fieldSelector: "metadata.name=cluster-policy", timeoutSeconds: 120 },
      (e) => messages.push(e.object.status?.conditions?.find((c) => c.type === "Ready")?.message ?? ""),
      stop.signal,
    );
    try {
      await cluster.kubectl(["patch", "clusterpolicy/cluster-policy", "--type=json", '-p=[{"op":"replace","path":"/spec/driver/usePrecompiled","value":true},{"op":"replace","path":"/spec/driver/version","value":"525"}]']);
      await waitForDriverPods(client, 4, (p) => p.metadata.name!.includes("5.15.0-69-generic"));
      await waitForState(client, "ready");
    } finally {
      stop.abort();
      await watching;
    }
    const waiting = messages.map((m) => /waiting to change driver: (.*)$/.exec(m)?.[1]).filter((w): w is string => w !== undefined);
    assert.ok(waiting.length > 0, `no status showed waiting nodes: ${messages.join(" | ")}`);
    // The first pass moves two nodes and holds the other two (the default would hold three).
    assert.equal(waiting[0]!.split(", ").length, 2, waiting[0]);
  });
});

describe("an invalid policy never takes a driver away", () => {
  before(async () => {
    await setNodes([
      { name: "inval-a", kernel: "5.15.0-69-generic", os: ubuntu2204 },
      { name: "inval-b", kernel: "6.8.0-1046-azure-fde", os: ubuntu2404 },
    ]);
    await resetPolicy();
    await cluster.kubectl(["patch", "clusterpolicy/cluster-policy", "--type=json", '-p=[{"op":"replace","path":"/spec/driver/usePrecompiled","value":true},{"op":"replace","path":"/spec/driver/version","value":"580"}]']);
    await waitForDriverPods(client, 2, (p) => /generic|azure-fde/.test(p.metadata.name!));
    await waitForState(client, "ready");
  });

  /** The CEL rules on spec in the CRD (the first version's schema). */
  const CRD_SPEC_RULES = "/spec/versions/0/schema/openAPIV3Schema/properties/spec/x-kubernetes-validations";
  const snapshot = async () => (await driverDaemonSets(client)).map((d) => `${d.metadata.name}=${image(d)}@${d.metadata.uid}`).sort();

  for (const c of [
    { name: "precompiled with vGPU", patch: '[{"op":"add","path":"/spec/vgpuManager","value":{"enabled":true}}]', undo: '[{"op":"remove","path":"/spec/vgpuManager"}]', reason: /VGPU|Vgpu|vGPU/i },
    { name: "precompiled with GDS: refused by the API server's rule, and by the operator where the CRD lacks it", patch: '[{"op":"add","path":"/spec/gds","value":{"enabled":true}}]', undo: '[{"op":"remove","path":"/spec/gds"}]', refused: /GPUDirect Storage/, reason: /^PrecompiledConflictsWithGDS$/ },
    { name: "a full version where a branch is needed: refused by the API server's rule, and by the operator where the CRD lacks it", patch: '[{"op":"replace","path":"/spec/driver/version","value":"580.95.05"}]', undo: '[{"op":"replace","path":"/spec/driver/version","value":"580"}]', refused: /set version to "580"/, reason: /^VersionNotABranch$/ },
    { name: "a branch NVIDIA publishes no precompiled images of for the OS", patch: '[{"op":"replace","path":"/spec/driver/version","value":"525"}]', undo: '[{"op":"replace","path":"/spec/driver/version","value":"580"}]', reason: /Unsupported|NotPublished|Platform/i },
  ]) {
    test(c.name, async () => {
      const before = await snapshot();
      if (c.refused) {
        await assert.rejects(cluster.kubectl(["patch", "clusterpolicy/cluster-policy", "--type=json", `-p=${c.patch}`]), c.refused);
        assert.deepEqual(await snapshot(), before);
        // A CRD without the rule (an older chart's, say) lets the policy through: the operator must refuse it too.
        await cluster.kubectl(["patch", "crd/clusterpolicies.nvidia.com", "--type=json", `-p=[{"op":"remove","path":"${CRD_SPEC_RULES}"}]`]);
      }
      try {
        await eventually("the API server accepts the patch", async () => (await cluster.kubectl(["patch", "clusterpolicy/cluster-policy", "--type=json", `-p=${c.patch}`])) && true);
        const policy = await waitForState(client, "notReady");
        const error = policy.status?.conditions?.find((x) => x.type === "Error");
        assert.equal(error?.status, "True");
        assert.match(error!.reason, c.reason);
        const events = await client.list<{ reason: string; message: string; involvedObject: { name: string } }>("/api/v1/namespaces/default/events");
        assert.ok(events.items.some((e) => e.involvedObject.name === "cluster-policy" && e.message === error!.message.split(". Existing")[0]), "an Event says what to change");
        assert.deepEqual(await snapshot(), before, "DaemonSets unchanged");
        assert.equal((await waitForDriverPods(client, 2)).length, 2);
        await cluster.kubectl(["patch", "clusterpolicy/cluster-policy", "--type=json", `-p=${c.undo}`]);
        await waitForState(client, "ready");
      } finally {
        // kubectl patch took the rules' field over: take it back.
        if (c.refused) await cluster.kubectl(["apply", "--server-side", "--force-conflicts", "-f", crdPath]);
      }
    });
  }

  test("a GPU node without NFD labels whose OS nodeInfo does not tell is reported by name and the rest is still served", async () => {
    await createGpuNode(client, { name: "inval-nolabels", kernel: "5.15.0-69-generic", os: { id: "cos", versionId: "117", prettyName: "Container-Optimized OS from Google" }, withoutNfdLabels: true, labels: { "nvidia.com/gpu.present": "true" } });
    nodeNames.push("inval-nolabels");
    const policy = await waitForState(client, "notReady");
    const error = policy.status?.conditions?.find((x) => x.type === "Error");
    assert.equal(error?.reason, "NFDLabelsMissing");
    assert.match(error!.message, /inval-nolabels/);
    assert.equal((await waitForDriverPods(client, 2)).length, 2);
  });
});

describe("several policies", () => {
  test("the oldest is active and the others are marked ignored", async () => {
    const second = examplePolicy.replace("name: cluster-policy", "name: zz-second-policy");
    await cluster.kubectl(["apply", "-f", "-"], { input: second });
    const p = await waitForState(client, "ignored", "zz-second-policy");
    assert.match(p.status!.conditions![0]!.message, /cluster-policy/);
    await client.delete(`${POLICY_PATH}/zz-second-policy`);
    assert.ok(await getPolicy(client));
  });
});

describe("operator processes", () => {
  test("two replicas: one leads; when it stops, the other takes over", async () => {
    await operator!.stop();
    const a = await startOperator({ kubeconfig: cluster.kubeconfig, identity: "replica-a" });
    const b = await startOperator({ kubeconfig: cluster.kubeconfig, identity: "replica-b" });
    try {
      const leader = async () => (await client.get<{ spec: { holderIdentity?: string } }>(`/apis/coordination.k8s.io/v1/namespaces/${NS}/leases/gpuop-leader`)).spec.holderIdentity;
      const first = await eventually("a leader", async () => ((await leader()) || undefined));
      assert.ok(["replica-a", "replica-b"].includes(first));
      const [active, standby] = first === "replica-a" ? [a, b] : [b, a];
      assert.match(await active.metrics(), /^gpuop_leader 1$/m);
      assert.doesNotMatch(await standby.metrics(), /^gpuop_leader 1$/m);
      assert.equal(await active.stop("SIGTERM"), 0);
      await eventually("standby takes over", async () => ((await leader()) === standby.identity ? true : undefined), { timeoutMs: 30_000 });
      // The new leader serves changes.
      await client.mergePatch("/api/v1/nodes/inval-b", { metadata: { labels: { "nvidia.com/gpu.deploy.driver": "false" } } });
      await waitForDriverPods(client, 1);
      await client.mergePatch("/api/v1/nodes/inval-b", { metadata: { labels: { "nvidia.com/gpu.deploy.driver": "true" } } });
      await waitForDriverPods(client, 2);
    } finally {
      await a.stop();
      await b.stop();
    }
  });

  test("an operator killed mid-reconcile and restarted leaves no duplicates and loses nothing", async () => {
    const first = await startOperator({ kubeconfig: cluster.kubeconfig, leaderElect: false });
    await cluster.kubectl(["patch", "clusterpolicy/cluster-policy", "--type=json", '-p=[{"op":"replace","path":"/spec/driver/usePrecompiled","value":false},{"op":"replace","path":"/spec/driver/version","value":"580.95.05"}]']);
    // Kill it while the switch is under way.
    await eventually("the switch has started", async () => ((await driverDaemonSets(client)).some((d) => d.metadata.labels?.["nvidia.com/precompiled"] === "false") ? true : undefined), { intervalMs: 20 });
    await first.stop("SIGKILL");
    // Nothing else moves nodes or removes pools, so this is the state the kill left: the switch
    // must be unfinished (a precompiled DaemonSet left), or this test would prove nothing.
    const left = await driverDaemonSets(client);
    assert.ok(left.some((d) => d.metadata.labels?.["nvidia.com/precompiled"] === "true"), `the kill landed after the switch had finished: ${left.map((d) => d.metadata.name).join(", ")}`);
    operator = await startOperator({ kubeconfig: cluster.kubeconfig, leaderElect: false });
    await client.delete("/api/v1/nodes/inval-nolabels").catch(() => undefined);
    await waitForDriverPods(client, 2, (p) => !/generic|azure/.test(p.metadata.name!));
    // The pools emptied by the switch go once their nodes have moved.
    const want = ["nvcr.io/nvidia/driver:580.95.05-ubuntu22.04", "nvcr.io/nvidia/driver:580.95.05-ubuntu24.04"];
    await eventually("only the conventional DaemonSets left", async () => {
      const images = (await driverDaemonSets(client)).map(image).sort();
      assert.deepEqual(images, want);
      return true;
    });
    assert.equal((await driverPods(client)).length, 2);
    await waitForState(client, "ready");
  });

  test("deleting the policy removes its DaemonSets (owner references) and the nodes' pool labels", async () => {
    await deletePolicies(client);
    await eventually("DaemonSets and pods gone", async () => ((await driverDaemonSets(client)).length === 0 && (await driverPods(client)).length === 0 ? true : undefined));
    await eventually("pool labels removed", async () => {
      const nodes = await client.list<{ metadata: { name: string; labels?: Record<string, string> } }>("/api/v1/nodes");
      return nodes.items.some((n) => n.metadata.labels?.["gpuop.nvidia.com/driver-pool"] !== undefined) ? undefined : true;
    });
  });
});
