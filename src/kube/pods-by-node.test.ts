import { test } from "node:test";
import assert from "node:assert/strict";
import { PodsByNode } from "./pods-by-node.ts";
import type { Pod } from "./types.ts";

const pod = (uid: string, node: string | undefined, ready = false): Pod => ({
  metadata: { name: `p-${uid}`, namespace: "gpu-operator", uid },
  ...(node !== undefined ? { spec: { nodeName: node } } : {}),
  status: { conditions: [{ type: "Ready", status: ready ? "True" : "False" }] },
}) as Pod;

test("PodsByNode: pods by node; a node's version moves with its pods and no other's", () => {
  const idx = new PodsByNode();
  assert.equal(idx.version("n1"), 0);
  idx.update("added", pod("a", "n1"));
  idx.update("added", pod("b", "n2"));
  const v1 = idx.version("n1");
  const v2 = idx.version("n2");
  assert.ok(v1 > 0 && v2 > 0 && v1 !== v2);
  assert.deepEqual(idx.on("n1").map((p) => p.metadata.uid), ["a"]);

  // A change of a's status: n1's version moves, n2's does not, the newest object is kept.
  idx.update("modified", pod("a", "n1", true), pod("a", "n1"));
  assert.notEqual(idx.version("n1"), v1);
  assert.equal(idx.version("n2"), v2);
  assert.equal(idx.on("n1")[0]!.status?.conditions?.[0]?.status, "True");

  // Unscheduled pods are not on any node; once bound, they are.
  idx.update("added", pod("c", undefined));
  assert.deepEqual(idx.on("n1").length, 1);
  const before = idx.version("n2");
  idx.update("modified", pod("c", "n2"), pod("c", undefined));
  assert.deepEqual(idx.on("n2").map((p) => p.metadata.uid).sort(), ["b", "c"]);
  assert.notEqual(idx.version("n2"), before);
});

test("PodsByNode: a deleted pod leaves its node; a node left without pods is back to version 0 with nothing kept", () => {
  const idx = new PodsByNode();
  idx.update("added", pod("a", "n1"));
  idx.update("added", pod("b", "n1"));
  const v = idx.version("n1");
  idx.update("deleted", pod("a", "n1"));
  assert.deepEqual(idx.on("n1").map((p) => p.metadata.uid), ["b"]);
  assert.notEqual(idx.version("n1"), v);
  idx.update("deleted", pod("b", "n1"));
  assert.deepEqual(idx.on("n1"), []);
  assert.equal(idx.version("n1"), 0);
  // Deleting what is not there changes nothing.
  idx.update("deleted", pod("zz", "n1"));
  assert.equal(idx.version("n1"), 0);
});

test("PodsByNode: a pod moved to another node (a new object with another nodeName) leaves the old one", () => {
  const idx = new PodsByNode();
  idx.update("added", pod("a", "n1"));
  idx.update("modified", pod("a", "n2"), pod("a", "n1"));
  assert.deepEqual(idx.on("n1"), []);
  assert.equal(idx.version("n1"), 0);
  assert.deepEqual(idx.on("n2").map((p) => p.metadata.uid), ["a"]);
});

test("PodsByNode: what on() handed out stays as it was; a changed pod keeps its place among its node's pods", () => {
  const idx = new PodsByNode();
  idx.update("added", pod("a", "n1"));
  idx.update("added", pod("b", "n1"));
  idx.update("added", pod("c", "n1"));
  const before = idx.on("n1");
  idx.update("modified", pod("b", "n1", true), pod("b", "n1"));
  idx.update("deleted", pod("a", "n1"));
  idx.update("added", pod("d", "n1"));
  assert.deepEqual(before.map((p) => p.metadata.uid), ["a", "b", "c"]);
  assert.equal(before[1]!.status?.conditions?.[0]?.status, "False");
  assert.deepEqual(idx.on("n1").map((p) => p.metadata.uid), ["b", "c", "d"]);
  assert.equal(idx.on("n1")[0]!.status?.conditions?.[0]?.status, "True");
});
