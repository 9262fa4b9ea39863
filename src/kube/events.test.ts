// The recorder's queue: what a pass hands it goes out in order, a few at a time, and never
// holds the pass. (That the API server stores the Event is test/control-characters.test.ts.)
import { test } from "node:test";
import assert from "node:assert/strict";
import { EventRecorder } from "./events.ts";
import type { KubeClient } from "./client.ts";
import { silentLogger } from "./log.ts";

/** Records each create and holds it until released: stands for a slow API server. */
function slowClient() {
  const started: string[] = [];
  const release: (() => void)[] = [];
  let inFlight = 0;
  let most = 0;
  const client = {
    create: async (_path: string, body: { reason: string }) => {
      started.push(body.reason);
      inFlight++;
      most = Math.max(most, inFlight);
      await new Promise<void>((r) => release.push(r));
      inFlight--;
      return body;
    },
  } as unknown as KubeClient;
  return { client, started, release, most: () => most };
}

const node = { apiVersion: "v1", kind: "Node", metadata: { name: "gpu-1" } };

test("EventRecorder: record returns before the Event is written; Events start in order, at most four at a time", async () => {
  const api = slowClient();
  const events = new EventRecorder(api.client, "gpuop", silentLogger);
  const written: string[] = [];
  const all = [...Array(10).keys()].map((i) => events.record(node, "Normal", `R${i}`, "m").then(() => written.push(`R${i}`)));
  // Nothing written yet, and the caller was not held: only the first four have started.
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(api.started, ["R0", "R1", "R2", "R3"]);
  assert.deepEqual(written, []);
  while (written.length < 10) {
    api.release.shift()?.();
    await new Promise((r) => setImmediate(r));
  }
  await Promise.all(all);
  assert.deepEqual(api.started, [...Array(10).keys()].map((i) => `R${i}`));
  assert.equal(api.most(), 4);
});

test("EventRecorder: a failed write is logged and settles; later Events still go out", async () => {
  let calls = 0;
  const client = { create: async () => { if (calls++ === 0) throw new Error("boom"); return {}; } } as unknown as KubeClient;
  const events = new EventRecorder(client, "gpuop", silentLogger);
  await events.record(node, "Warning", "First", "m");
  await events.record(node, "Normal", "Second", "m");
  assert.equal(calls, 2);
});
