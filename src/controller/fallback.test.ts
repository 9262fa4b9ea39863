// The fallback's quiet path (FallbackInput.quiet): with no pool missing, no node marked and no
// driver pod failing to pull, it must answer exactly what the full plan answers.
import { test } from "node:test";
import assert from "node:assert/strict";
import { ConventionalFallback, type FallbackInput } from "./fallback.ts";
import { silentLogger } from "../kube/log.ts";
import type { KubeClient } from "../kube/client.ts";
import type { Node } from "../kube/types.ts";
import { normalizePolicy, type ClusterPolicy } from "../core/policy.ts";
import type { Pool } from "../core/render.ts";

// Nothing here needs writing: any request fails the test.
const noRequests = new Proxy({}, { get: (_t, p) => () => { throw new Error(`unexpected request: ${String(p)}`); } }) as unknown as KubeClient;

const pools: Pool[] = [
  { name: "nvidia-driver-daemonset-5.15.0-91-generic-ubuntu22.04", kernel: "5.15.0-91-generic", osTag: "ubuntu22.04", image: "reg.example/driver:570-5.15.0-91-generic-ubuntu22.04", precompiled: true, nodes: ["gpu-a", "gpu-c"] },
  { name: "nvidia-driver-daemonset-6.8.0-45-generic-ubuntu24.04", kernel: "6.8.0-45-generic", osTag: "ubuntu24.04", image: "reg.example/driver:570-6.8.0-45-generic-ubuntu24.04", precompiled: true, nodes: ["gpu-b"] },
];
const nodes = ["gpu-a", "gpu-b", "gpu-c"].map((name) => ({ metadata: { name, uid: `uid-${name}`, labels: {}, annotations: { "example.com/other": "x" } } }) as Node);

function input(usePrecompiled: boolean, quiet: boolean): FallbackInput {
  const active = { apiVersion: "nvidia.com/v1", kind: "ClusterPolicy", metadata: { name: "cluster-policy", uid: "p1" }, spec: { driver: { usePrecompiled, version: usePrecompiled ? "570" : "570.86.15", repository: "reg.example" } } } as ClusterPolicy;
  return { active, policy: normalizePolicy(active), nodes, gpuNodes: [], pools, missing: new Map(), pods: () => [], daemonSets: () => [], namespace: "gpu-operator", ownerRef: { apiVersion: "nvidia.com/v1", kind: "ClusterPolicy", name: "cluster-policy", uid: "p1" }, quiet };
}

test("ConventionalFallback: the quiet path gives the full plan's answer, precompiled or conventional", async () => {
  const fallback = new ConventionalFallback({ client: noRequests, log: silentLogger, enabled: true, pullGraceMs: 60_000 });
  for (const usePrecompiled of [true, false]) {
    const full = await fallback.plan(input(usePrecompiled, false));
    const quiet = await fallback.plan(input(usePrecompiled, true));
    assert.deepEqual(quiet, full, `usePrecompiled ${usePrecompiled}`);
    assert.equal(quiet.plans.length, usePrecompiled ? 3 : 0);
  }
});
