import { test } from "node:test";
import assert from "node:assert/strict";
import { sameButVersion } from "./informer.ts";
import type { KubeObject } from "./types.ts";

const node = (rv: string, extra: Record<string, unknown> = {}): KubeObject =>
  ({ metadata: { name: "gpu-7", resourceVersion: rv, labels: { a: "1", b: "2" } }, status: { conditions: [{ type: "Ready", status: "True" }] }, ...extra }) as KubeObject;

test("sameButVersion ignores the resourceVersion, kind and apiVersion, and nothing else", () => {
  assert.ok(sameButVersion(node("10"), node("11")));
  assert.ok(sameButVersion(node("10"), node("11", { kind: "Node", apiVersion: "v1" })), "a list's items have no kind, a watch's objects do");
  assert.ok(!sameButVersion(node("10"), node("11", { status: { conditions: [{ type: "Ready", status: "False" }] } })));
  assert.ok(!sameButVersion(node("10"), node("11", { spec: { unschedulable: true } })), "a member only the new object has");
  assert.ok(!sameButVersion(node("10", { spec: {} }), node("11")), "a member only the old object has");
  const relabelled = node("11");
  (relabelled.metadata.labels as Record<string, string>)["b"] = "3";
  assert.ok(!sameButVersion(node("10"), relabelled));
  const fewer = node("11");
  delete (fewer.metadata.labels as Record<string, string>)["b"];
  assert.ok(!sameButVersion(node("10"), fewer), "a label gone");
  assert.ok(!sameButVersion(node("10"), node("11", { status: { conditions: [] } })), "an array shorter");
  assert.ok(!sameButVersion(node("10", { status: { conditions: {} } }), node("11", { status: { conditions: [] } })), "an object against an array");
  const renamed = node("11");
  renamed.metadata.name = "gpu-8";
  assert.ok(!sameButVersion(node("10"), renamed));
});
