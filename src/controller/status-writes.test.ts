import { test } from "node:test";
import assert from "node:assert/strict";
import { StatusWrites } from "./status-writes.ts";
import type { KubeClient } from "../kube/client.ts";
import type { ClusterPolicy } from "../core/policy.ts";

type Part = { state: string; nodes: number };

test("StatusWrites: a pass with the part and the stored status object of a pass that had nothing to write writes nothing; any change to either is looked at", async () => {
  const patches: unknown[] = [];
  // The API server stores what is patched; the cache then hands out a new policy object.
  const client = { mergePatch: async (_path: string, body: { status: { mine: Part } }) => (patches.push(body), { metadata: { name: "cluster-policy" }, status: body.status }) } as unknown as KubeClient;
  const writes = new StatusWrites<Part>(client, (st) => (st as { mine?: Part } | undefined)?.mine, (mine) => ({ status: { mine } }));
  const policy = (mine?: Part): ClusterPolicy => ({ apiVersion: "nvidia.com/v1", kind: "ClusterPolicy", metadata: { name: "cluster-policy", uid: "u1" }, ...(mine ? { status: { mine } } : {}) }) as unknown as ClusterPolicy;

  const empty = policy();
  await writes.write(empty, { state: "notReady", nodes: 3 });
  assert.equal(patches.length, 1, "a part the stored status lacks is written");
  const stored = policy({ state: "notReady", nodes: 3 });
  await writes.write(stored, { state: "notReady", nodes: 3 });
  await writes.write(stored, { state: "notReady", nodes: 3 });
  assert.equal(patches.length, 1, "the stored part is the one wanted: nothing to write");
  await writes.write(stored, { state: "ready", nodes: 3 });
  assert.equal(patches.length, 2, "a new part against the same stored object is written");
  const edited = policy({ state: "ready", nodes: 9 });
  await writes.write(edited, { state: "ready", nodes: 3 });
  assert.equal(patches.length, 3, "the same part against a status someone else changed is written again");
  const again = policy({ state: "ready", nodes: 3 });
  await writes.write(again, { state: "ready", nodes: 3 });
  await writes.write(again, { nodes: 3, state: "ready" });
  assert.equal(patches.length, 3, "key order is not a change");
  // Settled now; someone changes the stored status back: the same part must be written again.
  await writes.write(policy({ state: "notReady", nodes: 3 }), { state: "ready", nodes: 3 });
  assert.equal(patches.length, 4, "a settled part against a stored status that changed since is written");
});
