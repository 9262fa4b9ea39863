import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CredentialStore, normalizeRegistryHost } from "./credentials.ts";

const b64 = (s: string) => Buffer.from(s).toString("base64");

test("normalises config.json keys and image registries to one host form", () => {
  assert.equal(normalizeRegistryHost("https://index.docker.io/v1/"), "docker.io");
  assert.equal(normalizeRegistryHost("registry-1.docker.io"), "docker.io");
  assert.equal(normalizeRegistryHost("NVCR.io"), "nvcr.io");
  assert.equal(normalizeRegistryHost("http://127.0.0.1:5000/v2/"), "127.0.0.1:5000");
  assert.equal(normalizeRegistryHost("ghcr.io"), "ghcr.io");
});

test("reads auth (base64 user:password, password may hold colons) and username/password entries", () => {
  const store = CredentialStore.fromDockerConfig({
    auths: {
      "https://index.docker.io/v1/": { auth: b64("alice:pa:ss") },
      "nvcr.io": { username: "$oauthtoken", password: "nvapi-secret" },
      "ghcr.io": { auth: "" },
    },
  }, "docker config /x");
  assert.deepEqual(store.for("docker.io"), { username: "alice", password: "pa:ss", source: "docker config /x" });
  assert.deepEqual(store.for("index.docker.io"), store.for("docker.io"));
  assert.equal(store.for("nvcr.io")?.password, "nvapi-secret");
  assert.equal(store.for("ghcr.io"), undefined, "an empty entry means anonymous");
  assert.equal(store.for("quay.io"), undefined);
  assert.deepEqual(store.hosts(), ["docker.io", "nvcr.io"]);
});

test("reads a dockerconfigjson Secret's data and names it as the source", () => {
  const json = JSON.stringify({ auths: { "127.0.0.1:5000": { auth: b64("u:p"), identitytoken: "refresh" } } });
  const creds = CredentialStore.fromPullSecret(json, "gpu-operator", "ngc").for("127.0.0.1:5000");
  assert.deepEqual(creds, { username: "u", password: "p", identityToken: "refresh", source: "pull secret gpu-operator/ngc" });
  assert.throws(() => CredentialStore.fromPullSecret("{nope", "ns", "s"), /pull secret ns\/s: .dockerconfigjson is not JSON/);
});

test("a host kept by a credential helper is a clear error, not silent anonymous access", () => {
  const store = CredentialStore.fromDockerConfig({ auths: {}, credHelpers: { "gcr.io": "gcloud" } }, "docker config /c");
  assert.throws(() => store.for("gcr.io"), /docker-credential-gcloud, which gpuop does not run/);
  assert.equal(store.for("nvcr.io"), undefined);
});

test("bad files say which file and what to do, without their content", () => {
  const dir = mkdtempSync(join(tmpdir(), "gpuop-cred-"));
  const bad = join(dir, "config.json");
  writeFileSync(bad, '{"auths": {"r": {"auth": "c2VjcmV0"}}'); // truncated JSON holding a secret
  assert.throws(() => CredentialStore.fromFile(bad), (e: Error) => /is not valid JSON/.test(e.message) && !e.message.includes("c2VjcmV0"));
  assert.throws(() => CredentialStore.fromFile(join(dir, "missing.json")), /cannot read docker config .*ENOENT.*--docker-config/);
  writeFileSync(bad, JSON.stringify({ auths: { r: { auth: b64("no-colon-secret") } } }));
  assert.throws(() => CredentialStore.fromFile(bad), (e: Error) => /not base64 of "username:password"/.test(e.message) && !e.message.includes("no-colon-secret"));
});
