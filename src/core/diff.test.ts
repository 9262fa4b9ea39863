import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { canonicalJson, isSubset, sameJson, sameStringMap } from "./diff.ts";

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

test("an object is never a subset of null, a list or a scalar; an undefined field matches whatever is live", () => {
  assert.equal(isSubset({ a: 1 }, null), false);
  assert.equal(isSubset({}, null), false);
  assert.equal(isSubset({}, []), false);
  assert.equal(isSubset({}, "x"), false);
  assert.equal(isSubset({ a: undefined, b: 2 }, { a: 1, b: 2 }), true);
  assert.equal(isSubset([{ a: 1 }], [{ a: 1, b: 2 }]), true);
  assert.equal(isSubset([1], { 0: 1, length: 1 }), false);
});

test("canonicalJson: keys sorted whatever their order, undefined fields dropped, lists comma-separated in order", () => {
  assert.equal(canonicalJson({ c: 3, a: 1, b: 2 }), '{"a":1,"b":2,"c":3}');
  assert.equal(canonicalJson({ b: 2, c: 3, a: 1 }), '{"a":1,"b":2,"c":3}');
  assert.equal(canonicalJson({ a: 1, c: 3, b: 2 }), '{"a":1,"b":2,"c":3}');
  assert.equal(canonicalJson({ z: { y: [2, 1], x: undefined }, k: null }), '{"k":null,"z":{"y":[2,1]}}');
  assert.equal(canonicalJson([3, "a", { b: 1 }]), '[3,"a",{"b":1}]');
  assert.equal(canonicalJson(null), "null");
  assert.equal(canonicalJson("s"), '"s"');
});

test("property: canonicalJson is the same for the same content in any key order, and parses back to it", () => {
  fc.assert(
    fc.property(fc.dictionary(fc.string(), fc.jsonValue()), (o) => {
      const reversed = Object.fromEntries(Object.entries(o).reverse());
      assert.equal(canonicalJson(reversed), canonicalJson(o));
      assert.deepEqual(JSON.parse(canonicalJson(o)), JSON.parse(JSON.stringify(o)));
    }),
  );
});

// Surviving mutants in diff.ts, each equivalent: isSubset's `|| (desired === undefined && live === undefined)` (true,
// false, `!==`): `desired === live` already holds there; canonicalJson's key comparator `a <= b`, `a > b` -> true and
// `>=`: object keys are never equal; its `a > b ? 1 : 0` -> `false ? 1 : 0` and `a <= b ? 1 : 0`: V8's sort only asks
// whether the comparator is below 0, so 0 for "after" sorts the same (checked with 8 keys in reverse order).

test("property: sameStringMap says what comparing the canonical JSON of two string maps says", () => {
  const map = fc.dictionary(fc.constantFrom("a", "b", "c", "nvidia.com/x"), fc.option(fc.constantFrom("1", "2", ""), { nil: undefined }));
  fc.assert(
    fc.property(fc.option(map, { nil: undefined }), fc.option(map, { nil: undefined }), (a, b) => {
      const canonical = canonicalJson(a ?? {}) === canonicalJson(b ?? {});
      assert.equal(sameStringMap(a as Record<string, string> | undefined, b as Record<string, string> | undefined), canonical);
    }),
    { numRuns: 2000 },
  );
  assert.equal(sameStringMap({ a: "1" }, { a: "1", b: "2" }), false, "an extra key");
  assert.equal(sameStringMap(undefined, {}), true, "absent is empty");
});

test("property: sameJson says what comparing the canonical JSON of two values says", () => {
  // Small alphabets, so that equal values and near misses come up often; undefined members included
  // (not array elements: JSON has none, and canonicalJson writes [undefined] as []).
  const leaf = fc.oneof(fc.constantFrom("a", "b", ""), fc.constantFrom(0, 1), fc.boolean(), fc.constant(null), fc.constant(undefined));
  const { value } = fc.letrec((tie) => ({
    value: fc.oneof({ depthSize: "small" }, leaf, fc.array(tie("value").filter((v) => v !== undefined), { maxLength: 3 }), fc.dictionary(fc.constantFrom("x", "y", "z"), tie("value"), { maxKeys: 3 })),
  }));
  fc.assert(
    fc.property(value, value, (a, b) => {
      assert.equal(sameJson(a, b), canonicalJson(a) === canonicalJson(b));
      assert.equal(sameJson(a, structuredClone(a)), true);
    }),
    { numRuns: 3000 },
  );
  assert.equal(sameJson({ a: 1, b: undefined }, { a: 1 }), true, "an undefined member is an absent one");
  assert.equal(sameJson({ a: [1, 2] }, { a: [1, 2, 3] }), false);
  assert.equal(sameJson({ a: {} }, { a: [] }), false, "an object is not an array");
});
