import { test } from "node:test";
import assert from "node:assert/strict";
import { RecentNodePatches } from "./node-labels.ts";

test("RecentNodePatches: the same patch is skipped while the cache has not shown it, and only then", () => {
  const r = new RecentNodePatches(5000);
  assert.equal(r.inFlight("a", "k", "10", 0), false, "nothing sent yet");
  r.record("a", "k", "12", 0);
  assert.equal(r.inFlight("a", "k", "10", 100), true, "the cache still shows the node from before the patch");
  assert.equal(r.inFlight("a", "k", "11", 200), true, "another writer's change arrived first: still before ours");
  assert.equal(r.inFlight("a", "other", "11", 300), false, "a different patch goes out");
  assert.equal(r.inFlight("b", "k", "10", 300), false, "another node");
  assert.equal(r.inFlight("a", "k", "12", 400), false, "the cache shows our write: a patch computed from it is wanted");
  assert.equal(r.inFlight("a", "k", "10", 500), false, "and the record is gone");
  r.record("a", "k", "20", 1000);
  assert.equal(r.inFlight("a", "k", "19", 5999), true);
  assert.equal(r.inFlight("a", "k", "19", 6000), false, "after the window it goes out again, whatever the cache says");
  r.record("a", "k", undefined, 0);
  assert.equal(r.inFlight("a", "k", undefined, 1), true, "no resourceVersion returned: the window alone decides");
  assert.equal(r.retryInMs, 5000);
});
