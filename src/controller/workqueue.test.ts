import { test } from "node:test";
import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import { WorkQueue } from "./workqueue.ts";

test("a key added many times before it runs is processed once", async () => {
  const q = new WorkQueue();
  const seen: string[] = [];
  for (let i = 0; i < 5; i++) q.add("a");
  q.add("b");
  const ac = new AbortController();
  const done = q.run(async (k) => {
    seen.push(k);
    if (seen.length === 2) ac.abort();
  }, ac.signal);
  await done;
  assert.deepEqual(seen, ["a", "b"]);
});

test("a key added while it is being processed is processed again afterwards, never concurrently", async () => {
  const q = new WorkQueue();
  const ac = new AbortController();
  let running = 0;
  let maxRunning = 0;
  let runs = 0;
  q.add("k");
  await q.run(async () => {
    running++;
    maxRunning = Math.max(maxRunning, running);
    runs++;
    if (runs === 1) q.add("k");
    await sleep(5);
    running--;
    if (runs === 2) ac.abort();
  }, ac.signal);
  assert.equal(runs, 2);
  assert.equal(maxRunning, 1);
});

test("retries back off exponentially per key and forget resets them", () => {
  const q = new WorkQueue({ baseDelayMs: 100, maxDelayMs: 1000 });
  const delays = [1, 2, 3, 4, 5, 6].map(() => q.retry("x"));
  // Each delay lies in [base/2, base] for base = 100 * 2^(n-1), capped at 1000.
  const bases = [100, 200, 400, 800, 1000, 1000];
  delays.forEach((d, i) => assert.ok(d >= bases[i]! / 2 && d <= bases[i]!, `retry ${i + 1}: ${d}`));
  q.forget("x");
  const d = q.retry("x");
  assert.ok(d <= 100);
  const ac = new AbortController();
  ac.abort();
  return q.run(async () => undefined, ac.signal);
});

test("addAfter keeps one timer per key, the earliest: a pass asking again on every pass does not pile up passes", async () => {
  const q = new WorkQueue();
  for (let i = 0; i < 50; i++) q.addAfter("k", 80 + i);
  assert.equal(q.delayed, 1, "later asks for the same key are covered by the pending timer");
  q.addAfter("k", 20);
  assert.equal(q.delayed, 1, "an earlier ask replaces the pending timer");
  q.addAfter("other", 200);
  assert.equal(q.delayed, 2);
  const ac = new AbortController();
  const runs: { key: string; at: number }[] = [];
  const start = performance.now();
  const running = q.run(async (key) => void runs.push({ key, at: performance.now() - start }), ac.signal);
  await new Promise((r) => setTimeout(r, 300));
  ac.abort();
  await running;
  assert.deepEqual(runs.map((r) => r.key), ["k", "other"], "one pass for fifty-one asks");
  assert.ok(runs[0]!.at < 70, `the earliest ask decides: ran after ${runs[0]!.at} ms`);
  assert.equal(q.delayed, 0);
});

/**
 * Runs `q` on one key until its second pass starts: `first` is the first pass's work (it re-adds
 * the key somehow). Returns how many passes started and the gap from the first's end to the second's start.
 */
async function gapAfterFirstPass(q: WorkQueue, first: () => Promise<void> | void): Promise<{ passes: number; gapMs: number }> {
  const ac = new AbortController();
  const starts: number[] = [];
  let firstEnd = 0;
  q.add("k");
  await q.run(async () => {
    starts.push(performance.now());
    if (starts.length === 2) return ac.abort();
    await first();
    firstEnd = performance.now();
  }, ac.signal);
  return { passes: starts.length, gapMs: starts[1]! - firstEnd };
}

test("with pacing, the next pass waits pacing times the last pass's duration and events meanwhile fold into it", async () => {
  const q = new WorkQueue({ pacing: 4 });
  const { passes, gapMs } = await gapAfterFirstPass(q, () => {
    // 30 ms of CPU (waiting would not count).
    const until = process.cpuUsage().user + 30_000;
    while (process.cpuUsage().user < until) Math.sqrt(Math.random());
    // Events during and right after the pass: all of them become one more pass.
    for (let i = 0; i < 5; i++) setImmediate(() => q.add("k"));
  });
  assert.equal(passes, 2);
  // At least 30 ms of CPU went into the first pass: the gap is at least 4 × 30 ms (less timer slack).
  const firstDuration = 30;
  assert.ok(gapMs >= firstDuration * 4 - 5, `second pass started ${gapMs.toFixed(0)} ms after a ${firstDuration.toFixed(0)} ms pass`);
});

test("pacing counts CPU, not waiting: a pass that waits on the network is followed without a long pause", async () => {
  const q = new WorkQueue({ pacing: 4 });
  const { gapMs } = await gapAfterFirstPass(q, async () => {
    await sleep(2000);
    q.add("k");
  });
  // Pacing by wall time would hold the second pass back 8 s.
  assert.ok(gapMs < 4000, `second pass started ${gapMs.toFixed(0)} ms after the first ended`);
});

test("minGapMs: after a cheap pass the next waits at least the gap, and the events meanwhile fold into it", async () => {
  const q = new WorkQueue({ pacing: 3, minGapMs: 150 });
  const { passes, gapMs } = await gapAfterFirstPass(q, () => {
    for (let i = 0; i < 5; i++) setTimeout(() => q.add("k"), 10 * i);
  });
  assert.equal(passes, 2);
  assert.ok(gapMs >= 145, `second pass started ${gapMs.toFixed(0)} ms after the first`);
});
