import { test } from "node:test";
import assert from "node:assert/strict";
import { createServer, type IncomingMessage } from "node:http";
import { FencedError, isConflict, KubeApiError, KubeClient, retryAfterMs, THROTTLE_MAX_RETRIES, THROTTLE_MAX_WAIT_MS } from "./client.ts";

test("Retry-After in seconds is waited as given", () => {
  assert.equal(retryAfterMs("3"), 3000);
  assert.equal(retryAfterMs(["7", "1"]), 7000);
  assert.equal(retryAfterMs("0"), 0);
});

test("Retry-After as an HTTP date waits until then, never less than zero", () => {
  const now = Date.parse("2026-01-02T03:04:05Z");
  assert.equal(retryAfterMs("Fri, 02 Jan 2026 03:04:09 GMT", now), 4000);
  assert.equal(retryAfterMs("Fri, 02 Jan 2026 03:04:00 GMT", now), 0);
});

test("a huge Retry-After is capped, and a missing or unreadable one waits one second", () => {
  assert.equal(retryAfterMs("3600"), THROTTLE_MAX_WAIT_MS);
  assert.equal(retryAfterMs(undefined), 1000);
  assert.equal(retryAfterMs("soon"), 1000);
  assert.equal(retryAfterMs("-5"), 1000);
});

/** A loopback HTTP endpoint answering from a script, to see exactly what the client sends. */
async function endpoint(answer: (n: number, req: IncomingMessage) => { status: number; headers?: Record<string, string>; body?: unknown } | "hang") {
  const seen: { method: string; url: string; at: number }[] = [];
  const server = createServer((req, res) => {
    seen.push({ method: req.method ?? "", url: req.url ?? "", at: Date.now() });
    const a = answer(seen.length, req);
    if (a === "hang") return;
    res.writeHead(a.status, { "content-type": "application/json", ...a.headers });
    res.end(JSON.stringify(a.body ?? { kind: "Status", code: a.status, reason: a.status === 409 ? "Conflict" : "X", message: "scripted" }));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const client = new KubeClient({ server: `http://127.0.0.1:${(server.address() as { port: number }).port}`, source: "test" });
  return {
    client,
    seen,
    async close() {
      await client.close().catch(() => undefined);
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
}

test("a 409 is never re-sent by the client: the caller gets the conflict and re-reads", async () => {
  const e = await endpoint(() => ({ status: 409 }));
  try {
    await assert.rejects(e.client.mergePatch("/api/v1/nodes/a", { metadata: { labels: { x: "1" } } }), (err: unknown) => isConflict(err));
    assert.equal(e.seen.length, 1);
  } finally {
    await e.close();
  }
});

test("429s are re-sent after their Retry-After until one succeeds, and give up after the retry limit", async () => {
  const ok = await endpoint((n) => (n <= 2 ? { status: 429, headers: { "retry-after": "1" } } : { status: 200, body: { kind: "Node" } }));
  try {
    assert.deepEqual(await ok.client.mergePatch("/api/v1/nodes/a", {}), { kind: "Node" });
    assert.equal(ok.seen.length, 3);
    assert.ok(ok.seen[1]!.at - ok.seen[0]!.at >= 990 && ok.seen[2]!.at - ok.seen[1]!.at >= 990, "each retry waited the second it was asked to");
  } finally {
    await ok.close();
  }
  const never = await endpoint(() => ({ status: 429, headers: { "retry-after": "0" } }));
  try {
    await assert.rejects(never.client.get("/api/v1/nodes"), (err: unknown) => err instanceof KubeApiError && err.status === 429);
    assert.equal(never.seen.length, THROTTLE_MAX_RETRIES + 1);
  } finally {
    await never.close();
  }
});

test("once the fence is down nothing is sent and requests in flight are aborted; unfenced ones still go", async () => {
  const e = await endpoint((_, req) => (req.method === "PATCH" ? "hang" : { status: 200, body: {} }));
  const fence = new AbortController();
  e.client.fence = fence.signal;
  try {
    const inFlight = e.client.mergePatch("/api/v1/nodes/a", {});
    await new Promise((r) => setTimeout(r, 100));
    fence.abort(new Error("leadership lost"));
    await assert.rejects(inFlight, FencedError);
    await assert.rejects(e.client.mergePatch("/api/v1/nodes/b", {}), /not sent: Error: leadership lost/);
    assert.deepEqual(e.seen.map((r) => r.url), ["/api/v1/nodes/a"]);
    await e.client.get("/apis/coordination.k8s.io/v1/namespaces/x/leases/y", { unfenced: true });
    assert.equal(e.seen.length, 2);
  } finally {
    await e.close();
  }
});

test("discardBody: the answer is not read into an object, and an error still throws with the server's message", async () => {
  const e = await endpoint((n) => (n === 1 ? { status: 200, body: { kind: "Node", metadata: { name: "a" } } } : { status: 422 }));
  try {
    assert.equal(await e.client.mergePatch("/api/v1/nodes/a", { metadata: { labels: { x: "1" } } }, { discardBody: true }), undefined);
    await assert.rejects(e.client.mergePatch("/api/v1/nodes/a", {}, { discardBody: true }), (err: unknown) => err instanceof KubeApiError && err.status === 422 && /scripted/.test(err.message));
    assert.equal(e.seen.length, 2);
  } finally {
    await e.close();
  }
});
