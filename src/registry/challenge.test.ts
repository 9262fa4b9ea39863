import { test } from "node:test";
import assert from "node:assert/strict";
import { parseChallenges } from "./challenge.ts";

test("parses a bearer challenge as nvcr.io and Docker Hub send it", () => {
  const [c] = parseChallenges('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/ubuntu:pull"');
  assert.deepEqual(c, {
    scheme: "bearer",
    params: { realm: "https://auth.docker.io/token", service: "registry.docker.io", scope: "repository:library/ubuntu:pull" },
  });
});

test("keeps commas inside quoted values and reads several challenges", () => {
  const cs = parseChallenges('Basic realm="Registry Realm", Bearer realm="https://t/x",scope="repository:a/b:pull,push",error="insufficient_scope"');
  assert.equal(cs.length, 2);
  assert.deepEqual(cs[0], { scheme: "basic", params: { realm: "Registry Realm" } });
  assert.equal(cs[1]?.params.scope, "repository:a/b:pull,push");
  assert.equal(cs[1]?.params.error, "insufficient_scope");
});

test("accepts unquoted values, odd spacing and escaped quotes", () => {
  const [c] = parseChallenges('bearer  realm = https://x/token , service=reg,  note="a \\"b\\""');
  assert.equal(c?.scheme, "bearer");
  assert.deepEqual(c?.params, { realm: "https://x/token", service: "reg", note: 'a "b"' });
});

test("an empty header has no challenges", () => {
  assert.deepEqual(parseChallenges(""), []);
});
