// Property-based ClusterPolicies through the real API server, applied one
// after another to a running operator whose driver pods are Ready: random
// schema-valid specs, and invalid ones the CRD lets through. The operator must
// not crash, must report every invalid one in the status with a reason, and
// must never delete a Ready driver pod (or touch a DaemonSet) because of one.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { attachCluster, type LocalCluster } from "./harness/cluster.ts";
import { clearFleet, freshFleet, isConventionalPod, isPrecompiledPod, NS } from "./harness/faults.ts";
import { startOperator, type OperatorProcess } from "./harness/operator.ts";
import { driverDaemonSets, driverPods, ensureNamespace, getPolicy, installCrd, POLICY_PATH, waitForDriverPods, waitForState } from "./harness/policy.ts";
import { eventually } from "./harness/wait.ts";
import type { KubeClient } from "../src/kube/client.ts";
import type { ClusterPolicy } from "../src/core/policy.ts";

let cluster: LocalCluster;
let client: KubeClient;
let operator: OperatorProcess | undefined;
let nodeNames: string[] = [];
const NODES = 3;
const RUNS = Number(process.env.GPUOP_POLICY_FUZZ_RUNS ?? 32);

type Spec = Record<string, unknown> & { driver: Record<string, unknown> };
/** A spec to apply and, for an invalid one, the reason the status must give. */
interface Case {
  spec: Spec;
  invalid?: string;
}

// Driver settings that change nothing about validity.
const extras = fc.record(
  {
    env: fc.array(fc.record({ name: fc.stringMatching(/^[A-Z][A-Z0-9_]{0,11}$/), value: fc.string({ maxLength: 20 }) }), { maxLength: 3 }),
    args: fc.array(fc.stringMatching(/^--[a-z-]{1,12}$/), { maxLength: 2 }),
    kernelModuleType: fc.constantFrom("auto", "open", "proprietary"),
    imagePullPolicy: fc.constantFrom("Always", "IfNotPresent", "Never"),
    upgradePolicy: fc.record({ maxUnavailable: fc.oneof(fc.integer({ min: 1, max: 5 }), fc.constantFrom("34%", "100%")) }),
  },
  { requiredKeys: [] },
);
const base = { enabled: true, repository: "nvcr.io/nvidia", image: "driver" };
// The test nodes run Ubuntu 22.04 with generic kernels on amd64: NVIDIA publishes precompiled drivers of these branches for them.
const conventional = fc.tuple(extras, fc.constantFrom("550.54.15", "535.161.08", "570.86.15")).map(([x, version]) => ({ ...base, ...x, usePrecompiled: false, version }));
const precompiled = fc.tuple(extras, fc.constantFrom("535", "550", "570", "580")).map(([x, version]) => ({ ...base, ...x, usePrecompiled: true, version }));
const valid: fc.Arbitrary<Case> = fc.oneof(conventional, precompiled).map((driver) => ({ spec: { driver } }));

const word = fc.stringMatching(/^[a-z]{1,8}$/);
const invalid: fc.Arbitrary<Case> = fc.oneof(
  precompiled.map((driver) => ({ spec: { driver, vgpuManager: { enabled: true } }, invalid: "PrecompiledConflictsWithVGPU" })),
  fc.oneof(conventional, precompiled).map((driver) => ({ spec: { driver: { ...driver, version: "" } }, invalid: "VersionMissing" })),
  fc.tuple(precompiled, word).map(([driver, w]) => ({ spec: { driver: { ...driver, version: `v${w}` } }, invalid: "VersionNotABranch" })),
  fc.tuple(conventional, word).map(([driver, w]) => ({ spec: { driver: { ...driver, version: `${w}-latest` } }, invalid: "VersionNotAFullVersion" })),
  fc.tuple(fc.oneof(conventional, precompiled), word).map(([driver, w]) => ({ spec: { driver: { ...driver, repository: `Bad Registry/${w}` } }, invalid: "InvalidImageReference" })),
  fc.tuple(precompiled, fc.constantFrom("390", "418", "470")).map(([driver, version]) => ({ spec: { driver: { ...driver, version } }, invalid: "UnsupportedPlatform" })),
);

/** Replaces the policy's spec and returns the generation the API server gave it. */
async function applySpec(spec: Spec): Promise<number> {
  // The operator's status writes change the resourceVersion too: on a conflict, read again and retry, as kubectl does.
  for (let attempt = 1; ; attempt++) {
    const current = await getPolicy(client);
    try {
      const updated = await client.request<ClusterPolicy>("PUT", `${POLICY_PATH}/cluster-policy`, { body: { ...current, spec } });
      return updated.metadata.generation ?? 0;
    } catch (err) {
      // An upgrade in progress writes the status at each step: give it room between tries.
      if ((err as { status?: number }).status !== 409 || attempt >= 20) throw err;
      await new Promise((r) => setTimeout(r, 100 * Math.min(attempt, 5)));
    }
  }
}

/** Driver pods and DaemonSets, by identity and generation: what a bad policy must leave alone. */
async function snapshot(): Promise<string[]> {
  const pods = (await driverPods(client)).map((p) => `pod ${p.metadata.name}@${p.metadata.uid}${p.metadata.deletionTimestamp ? " deleting" : ""} ${p.status?.phase}`);
  const sets = (await driverDaemonSets(client)).map((d) => `ds ${d.metadata.name}@${d.metadata.uid} gen ${d.metadata.generation}`);
  return [...pods, ...sets].sort();
}

before(async () => {
  cluster = attachCluster(process.env.GPUOP_TEST_CLUSTER ?? "");
  client = cluster.client();
  await installCrd(cluster);
  await ensureNamespace(client, NS);
  nodeNames = await freshFleet(cluster, client, [], "fuzz", NODES);
  operator = await startOperator({ kubeconfig: cluster.kubeconfig, leaderElect: false });
});

after(async () => {
  await operator?.stop();
  await clearFleet(client, nodeNames).catch(() => undefined);
  await client.close();
});

test("random and invalid ClusterPolicies never crash the operator, each invalid one is reported, and no Ready driver is taken away", async () => {
  await waitForDriverPods(client, NODES);
  let tried = 0;
  let invalidTried = 0;
  await fc.assert(
    fc.asyncProperty(fc.oneof(valid, invalid), async (c) => {
      tried++;
      // Start from a converged cluster: every node's driver Running and Ready.
      await waitForDriverPods(client, NODES, undefined, 180_000);
      const before = await snapshot();
      const generation = await applySpec(c.spec);
      const policy = await eventually(`the operator reports generation ${generation}`, async () => {
        const p = await getPolicy(client);
        return p.status?.observedGeneration === generation && (p.status.state === "ready" || p.status.state === "notReady") ? p : undefined;
      }, { timeoutMs: 180_000 });
      assert.equal(operator!.proc.exitCode, null, `the operator is running:\n${operator!.logs().slice(-3000)}`);
      const error = policy.status?.conditions?.find((x) => x.type === "Error" && x.status === "True");
      if (c.invalid) {
        invalidTried++;
        assert.equal(policy.status?.state, "notReady", `${JSON.stringify(c.spec)} is reported`);
        assert.equal(error?.reason, c.invalid, JSON.stringify(policy.status));
        assert.ok((error?.message ?? "").length > 0, "the Error condition says what is wrong");
        assert.deepEqual(await snapshot(), before, `no driver pod or DaemonSet changed for ${JSON.stringify(c.spec)}`);
      } else {
        assert.equal(error, undefined, `${JSON.stringify(c.spec)} is valid: ${JSON.stringify(policy.status)}`);
        const want = c.spec.driver.usePrecompiled ? isPrecompiledPod : isConventionalPod;
        await waitForDriverPods(client, NODES, want, 180_000);
        await waitForState(client, "ready", "cluster-policy", 180_000);
        const images = (await driverDaemonSets(client)).map((d) => (d.spec?.template?.spec?.containers as { image: string }[] | undefined)?.[0]?.image ?? "");
        assert.ok(images.length > 0 && images.every((i) => i.includes(`:${String(c.spec.driver.version)}-`)), `DaemonSets follow the policy: ${images.join(", ")}`);
      }
    }),
    { numRuns: RUNS, endOnFailure: true },
  );
  assert.doesNotMatch(operator!.logs(), /unhandled|uncaught/i);
  console.log(`# tried ${tried} ClusterPolicies through the API server (${invalidTried} invalid)`);
  assert.ok(invalidTried > 0 && invalidTried < tried, "both kinds were tried");
});
