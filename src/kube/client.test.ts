import { test } from "node:test";
import assert from "node:assert/strict";
import { retryAfterMs, THROTTLE_MAX_WAIT_MS } from "./client.ts";

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
