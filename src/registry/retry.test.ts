import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { backoffDelay, defaultRetryPolicy, isRetryableStatus, parseRetryAfter } from "./retry.ts";
import { nextLink } from "./pagination.ts";

test("Retry-After in seconds and as an HTTP date", () => {
  assert.equal(parseRetryAfter("3"), 3000);
  assert.equal(parseRetryAfter(["0"]), 0);
  const now = Date.parse("Wed, 21 Oct 2015 07:28:00 GMT");
  assert.equal(parseRetryAfter("Wed, 21 Oct 2015 07:28:05 GMT", now), 5000);
  assert.equal(parseRetryAfter("Wed, 21 Oct 2015 07:27:00 GMT", now), 0, "a date in the past means now");
  assert.equal(parseRetryAfter(undefined), undefined);
  assert.equal(parseRetryAfter("soon"), undefined);
});

test("retries 429 and 5xx, not 4xx or 501", () => {
  assert.ok(isRetryableStatus(429));
  assert.ok(isRetryableStatus(503));
  assert.ok(!isRetryableStatus(404));
  assert.ok(!isRetryableStatus(501));
});

test("backoff grows, stays within its step and never exceeds the cap", () => {
  fc.assert(fc.property(fc.integer({ min: 0, max: 40 }), fc.double({ min: 0, max: 0.999999, noNaN: true }), (retry, r) => {
    const d = backoffDelay(retry, defaultRetryPolicy, () => r);
    const step = Math.min(defaultRetryPolicy.maxDelayMs, defaultRetryPolicy.baseDelayMs * 2 ** retry);
    return d >= step / 2 - 1 && d <= step && d <= defaultRetryPolicy.maxDelayMs;
  }));
  assert.ok(backoffDelay(3, defaultRetryPolicy, () => 0) > backoffDelay(1, defaultRetryPolicy, () => 0));
});

test("nextLink finds rel=next among links", () => {
  assert.equal(nextLink('</v2/a/tags/list?last=x&n=100>; rel="next"'), "/v2/a/tags/list?last=x&n=100");
  assert.equal(nextLink('<https://r/v2/a/tags/list?n=2&last=b>; rel=next'), "https://r/v2/a/tags/list?n=2&last=b");
  assert.equal(nextLink('</p1>; rel="prev", </p3>; rel="next"'), "/p3");
  assert.equal(nextLink(['</p1>; rel="prev"']), undefined);
  assert.equal(nextLink(undefined), undefined);
});
