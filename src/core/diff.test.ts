import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { isSubset } from "./diff.ts";

test("server defaults do not count as a difference; edits do", () => {
  const desired = { spec: { template: { spec: { containers: [{ name: "c", image: "a:1" }] } } } };
  const live = { spec: { revisionHistoryLimit: 10, template: { spec: { dnsPolicy: "ClusterFirst", containers: [{ name: "c", image: "a:1", terminationMessagePath: "/dev/termination-log" }] } } } };
  assert.equal(isSubset(desired, live), true);
  const edited = structuredClone(live);
  edited.spec.template.spec.containers[0]!.image = "a:2";
  assert.equal(isSubset(desired, edited), false);
});

test("a list with an extra or missing element differs", () => {
  assert.equal(isSubset({ a: [1, 2] }, { a: [1, 2, 3] }), false);
  assert.equal(isSubset({ a: [1, 2] }, { a: [1] }), false);
  assert.equal(isSubset({ a: [] }, { a: [] }), true);
});

test("a missing object or scalar differs", () => {
  assert.equal(isSubset({ a: { b: 1 } }, {}), false);
  assert.equal(isSubset({ a: "x" }, { a: 1 }), false);
  assert.equal(isSubset({ a: false }, {}), false);
});

test("property: every JSON value is a subset of itself and of itself with fields added", () => {
  fc.assert(
    fc.property(fc.jsonValue(), fc.string(), fc.jsonValue(), (v, extraKey, extra) => {
      assert.ok(isSubset(v, structuredClone(v)));
      if (v !== null && typeof v === "object" && !Array.isArray(v) && !(extraKey in v)) {
        assert.ok(isSubset(v, { ...v, [extraKey]: extra }));
      }
    }),
  );
});
