import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { firstByName, OperandTally, type OperandNodeStates } from "./tally.ts";
import type { OperandKey } from "./common.ts";

const ON = new Set<OperandKey>(["toolkit", "validator"]);
const of = (t: OperandTally, key: OperandKey) => {
  const o = t.split(ON).find((s) => s.info.key === key)!;
  return { meant: o.meant, waiting: o.waiting, notReady: o.notReady, waitingNames: o.waitingNames, notReadyNames: o.notReadyNames };
};

test("OperandTally: a node's new states replace its old ones in the counts; a node set to undefined no longer counts", () => {
  const t = new OperandTally();
  t.set("b", { toolkit: "waiting", validator: "waiting" });
  t.set("a", { toolkit: "starting" });
  assert.deepEqual(of(t, "toolkit"), { meant: 2, waiting: 1, notReady: 1, waitingNames: ["b"], notReadyNames: ["a"] });
  t.set("b", { toolkit: "ready", validator: "starting" });
  assert.deepEqual(of(t, "toolkit"), { meant: 2, waiting: 0, notReady: 1, waitingNames: [], notReadyNames: ["a"] });
  assert.deepEqual(of(t, "validator"), { meant: 1, waiting: 0, notReady: 1, waitingNames: [], notReadyNames: ["b"] });
  t.set("a", undefined);
  assert.deepEqual(of(t, "toolkit"), { meant: 1, waiting: 0, notReady: 0, waitingNames: [], notReadyNames: [] });
  // Operands not enabled are reported off, whatever the nodes said.
  const gfd = t.split(ON).find((s) => s.info.key === "gfd")!;
  assert.deepEqual([gfd.enabled, gfd.meant], [false, 0]);
});

test("firstByName: the n smallest names in order, from any order", () => {
  assert.deepEqual(firstByName(["n5", "n1", "n9", "n3", "n2"], 3), ["n1", "n2", "n3"]);
  assert.deepEqual(firstByName(["b", "a"], 20), ["a", "b"]);
  fc.assert(fc.property(fc.uniqueArray(fc.string(), { maxLength: 60 }), fc.integer({ min: 0, max: 25 }), (names, n) => {
    assert.deepEqual(firstByName(names, n), [...names].sort().slice(0, n));
  }));
});

test("property: a tally fed any sequence of node updates counts as one built from the last states alone", () => {
  const states = fc.record({ toolkit: fc.constantFrom("ready", "starting", "waiting"), validator: fc.constantFrom("ready", "starting", "waiting") }, { requiredKeys: [] }) as fc.Arbitrary<OperandNodeStates>;
  const update = fc.tuple(fc.constantFrom("n1", "n2", "n3", "n4"), fc.option(states, { nil: undefined }));
  fc.assert(fc.property(fc.array(update, { maxLength: 40 }), (updates) => {
    const live = new OperandTally();
    const last = new Map<string, OperandNodeStates | undefined>();
    for (const [name, s] of updates) {
      live.set(name, s);
      last.set(name, s);
    }
    const fresh = new OperandTally();
    for (const [name, s] of last) fresh.set(name, s);
    assert.deepEqual(live.split(ON), fresh.split(ON));
  }));
});
