// Image checks are off the reconcile path: the controller gets the last known answer at once,
// even while a registry holds its request open, and is called back when the answer arrives.
// Each check has a deadline, so a registry that never answers ends as "unknown", not as a stuck
// check. A loopback server stands in for a registry that stalls on purpose.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createServer, type ServerResponse } from "node:http";
import { ImageChecker } from "../src/controller/image-check.ts";
import type { KubeClient } from "../src/kube/client.ts";
import { silentLogger } from "../src/kube/log.ts";
import { RegistryClient } from "../src/registry/client.ts";
import { pushImage, startRegistry } from "./harness/registry.ts";

async function stallingRegistry() {
  const held: ServerResponse[] = [];
  let heads = 0;
  const server = createServer((req, res) => {
    if (req.method === "HEAD" && req.url === "/v2/nvidia/driver/manifests/550.54.15-ubuntu22.04") {
      heads++;
      held.push(res);
      return;
    }
    res.writeHead(404).end();
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  const addr = server.address();
  const host = `127.0.0.1:${typeof addr === "object" && addr ? addr.port : 0}`;
  return {
    host,
    heads: () => heads,
    held: () => held.length,
    /** Answers every held request: the manifest exists. */
    release() {
      for (const res of held.splice(0)) {
        res.writeHead(200, { "content-type": "application/vnd.oci.image.index.v1+json", "docker-content-digest": `sha256:${"b".repeat(64)}`, "content-length": "0" }).end();
      }
    },
    close: () => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }),
  };
}

// No pull secrets are named, so the checker never calls the API server.
const noKube = undefined as unknown as KubeClient;

test("the reconcile gets an answer at once while the registry stalls, and a callback when it answers", { timeout: 60_000 }, async () => {
  const reg = await stallingRegistry();
  const checker = new ImageChecker(noKube, silentLogger, { plainHttpRegistries: [reg.host], checkDeadlineMs: 120_000 });
  let answers = 0;
  const answered = new Promise<void>((resolve) => checker.onAnswer(() => {
    answers++;
    resolve();
  }));
  const image = `${reg.host}/nvidia/driver:550.54.15-ubuntu22.04`;
  try {
    // The registry holds the request; the answer must not wait for it.
    const first = await checker.availability(image, [], "gpu-operator", []);
    assert.deepEqual(first, { result: "unknown", pending: true, reason: "the registry has not answered yet" });
    // Asking again while the check runs starts no second check.
    await checker.availability(image, [], "gpu-operator", []);
    while (reg.held() === 0) await new Promise((r) => setImmediate(r));
    assert.equal(reg.heads(), 1);
    reg.release();
    await answered;
    assert.deepEqual(await checker.availability(image, [], "gpu-operator", []), { result: "present", digest: `sha256:${"b".repeat(64)}` });
    assert.equal(answers, 1);
    // A fresh answer is served from the cache: no new request.
    await checker.idle();
    assert.equal(reg.heads(), 1);
  } finally {
    await checker.close();
    await reg.close();
  }
});

test("a check that outlives its deadline ends as unknown with the reason", { timeout: 60_000 }, async () => {
  const reg = await stallingRegistry();
  const checker = new ImageChecker(noKube, silentLogger, { plainHttpRegistries: [reg.host], checkDeadlineMs: 300 });
  const answered = new Promise<void>((resolve) => checker.onAnswer(resolve));
  const image = `${reg.host}/nvidia/driver:550.54.15-ubuntu22.04`;
  try {
    assert.equal((await checker.availability(image, [], "gpu-operator", [])).pending, true);
    await answered;
    const answer = await checker.availability(image, [], "gpu-operator", []);
    assert.equal(answer.result, "unknown");
    assert.equal(answer.pending, undefined);
    assert.match(answer.reason ?? "", /the registry check did not finish within 0\.3 s/);
  } finally {
    await checker.close();
    await reg.close();
  }
});

test("a pull secret name that is not an object name never becomes an API path", { timeout: 60_000 }, async () => {
  const paths: string[] = [];
  const kube = { get: async (path: string) => { paths.push(path); throw Object.assign(new Error("not found"), { status: 404 }); } } as unknown as KubeClient;
  const reg = await stallingRegistry();
  const checker = new ImageChecker(kube, silentLogger, { plainHttpRegistries: [reg.host], checkDeadlineMs: 300 });
  try {
    const answer = await checker.check(`${reg.host}/nvidia/driver:1.0-missing`, [], "gpu-operator", ["../../kube-system/secrets/admin", "regcred"]);
    assert.deepEqual(paths, ["/api/v1/namespaces/gpu-operator/secrets/regcred"]);
    assert.equal(answer.result, "missing");
  } finally {
    await checker.close();
    await reg.close();
  }
});

test("the registry CA option lets the check verify a private registry's certificate", { timeout: 120_000 }, async () => {
  const reg = await startRegistry({ tls: true });
  const push = new RegistryClient({ registry: reg.host, ca: reg.ca! });
  const image = `${reg.host}/nvidia/driver:550.54.15-ubuntu22.04`;
  const without = new ImageChecker(noKube, silentLogger);
  const withCa = new ImageChecker(noKube, silentLogger, { ca: reg.ca! });
  try {
    await pushImage(push, "nvidia/driver", ["550.54.15-ubuntu22.04"]);
    const refused = await without.check(image, ["amd64"], "gpu-operator", []);
    assert.equal(refused.result, "unknown");
    assert.match(refused.reason ?? "", /cannot verify the TLS certificate/);
    const found = await withCa.check(image, ["amd64"], "gpu-operator", []);
    assert.equal(found.result, "present");
    assert.match(found.digest ?? "", /^sha256:[0-9a-f]{64}$/);
  } finally {
    await without.close();
    await withCa.close();
    await push.close();
    await reg.stop();
  }
});
