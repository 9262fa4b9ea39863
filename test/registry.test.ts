// The registry client against a real CNCF distribution registry (v3) on
// 127.0.0.1, without auth: paging, manifests and platforms, missing
// repositories, 429 with Retry-After through a loopback proxy, a registry that
// is down. Auth flows are in registry-auth.test.ts.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createServer, request as httpRequest, type Server } from "node:http";
import { RegistryClient } from "../src/registry/client.ts";
import { RegistryError } from "../src/registry/errors.ts";
import { localClient, freePort, pushImage, pushIndex, startRegistry, type LocalRegistry } from "./harness/registry.ts";

const repo = "nvidia/driver";
const manyRepo = "many/tags";
const manyTags = Array.from({ length: 2500 }, (_, i) => `525-5.15.0-${i}-generic-ubuntu22.04`);

let reg: LocalRegistry;
let clamped: LocalRegistry;

before(async () => {
  [reg, clamped] = await Promise.all([startRegistry(), startRegistry({ maxTags: 300 })]);
  const c = localClient(reg);
  try {
    await pushImage(c, manyRepo, manyTags, { concurrency: 16 });
    await pushImage(c, repo, ["525-5.15.0-69-generic-ubuntu22.04"], { arch: "amd64" });
    await pushImage(c, repo, ["535-5.15.0-1033-aws-ubuntu22.04"], { arch: "arm64", docker: true });
    await pushIndex(c, repo, "580-6.8.0-1046-azure-fde-ubuntu24.04", [{ os: "linux", architecture: "amd64" }, { os: "linux", architecture: "arm64" }]);
    await pushIndex(c, repo, "550.54.15-ubuntu22.04", [{ os: "linux", architecture: "amd64" }, { os: "linux", architecture: "arm64", variant: "v8" }], { docker: true });
  } finally {
    await c.close();
  }
  const cc = localClient(clamped);
  try {
    await pushImage(cc, manyRepo, manyTags.slice(0, 1000), { concurrency: 16 });
  } finally {
    await cc.close();
  }
});

after(async () => {
  await reg?.stop();
  await clamped?.stop();
});

describe("tags", () => {
  test("lists 2,500 tags across pages, each once, sorted", async () => {
    const c = localClient(reg);
    try {
      const tags = await c.listTags(manyRepo, { pageSize: 1000 });
      assert.equal(tags.length, 2500);
      assert.deepEqual(tags, [...manyTags].sort());
      assert.equal(c.requestCounts().GET, 3, "three pages of 1000, following Link");
    } finally {
      await c.close();
    }
  });

  test("follows Link when the registry returns fewer tags than n asks for", async () => {
    const c = localClient(clamped);
    try {
      const tags = await c.listTags(manyRepo, { pageSize: 1000 });
      assert.equal(tags.length, 1000);
      assert.equal(new Set(tags).size, 1000);
      assert.ok((c.requestCounts().GET ?? 0) >= 4, `clamped to 300 a page, so at least 4 pages, got ${c.requestCounts().GET}`);
    } finally {
      await c.close();
    }
  });

  test("tagsPresent answers many tags from the paged list, a few by HEAD", async () => {
    const wanted = [...manyTags.slice(0, 150), "525-5.15.0-99999-generic-ubuntu22.04"];
    const c = localClient(reg);
    try {
      const many = await c.tagsPresent(manyRepo, wanted);
      assert.equal(many.size, 150);
      assert.ok(!many.has("525-5.15.0-99999-generic-ubuntu22.04"));
      assert.deepEqual(c.requestCounts(), { GET: 3 }, "three tag pages, no HEADs");
      const few = await c.tagsPresent(manyRepo, [manyTags[7]!, "nope"]);
      assert.deepEqual([...few], [manyTags[7]]);
      assert.equal(c.requestCounts().HEAD, 2);
    } finally {
      await c.close();
    }
  });

  test("a missing repository is an error naming it and the registry", async () => {
    const c = localClient(reg);
    try {
      await assert.rejects(c.listTags("nvidia/nope"), (e: unknown) => {
        assert.ok(e instanceof RegistryError);
        assert.equal(e.code, "not-found");
        assert.equal(e.message, `repository nvidia/nope does not exist on ${reg.host}: check the repository name (for NVIDIA's images: nvcr.io/nvidia/driver)`);
        return true;
      });
      assert.equal(await c.repositoryExists("nvidia/nope"), false);
      assert.equal(await c.repositoryExists(repo), true);
      assert.equal(await c.hasTag("nvidia/nope", "latest"), false, "a tag in a missing repository does not exist");
    } finally {
      await c.close();
    }
  });
});

describe("manifests and platforms", () => {
  test("HEAD and GET accept OCI and Docker manifests and indexes", async () => {
    const c = localClient(reg);
    try {
      const head = await c.headManifest(repo, "525-5.15.0-69-generic-ubuntu22.04");
      assert.equal(head?.mediaType, "application/vnd.oci.image.manifest.v1+json");
      assert.match(head?.digest ?? "", /^sha256:[0-9a-f]{64}$/);
      assert.equal((await c.getManifest(repo, "535-5.15.0-1033-aws-ubuntu22.04"))?.mediaType, "application/vnd.docker.distribution.manifest.v2+json");
      const list = await c.getManifest(repo, "550.54.15-ubuntu22.04");
      assert.equal(list?.mediaType, "application/vnd.docker.distribution.manifest.list.v2+json");
      assert.equal(list?.isIndex, true);
      assert.equal(await c.headManifest(repo, "999-missing"), undefined);
      assert.equal(await c.getManifest(repo, "999-missing"), undefined);
    } finally {
      await c.close();
    }
  });

  test("reports the platforms of an index and of single images", async () => {
    const c = localClient(reg);
    try {
      assert.deepEqual(await c.platforms(repo, "580-6.8.0-1046-azure-fde-ubuntu24.04"), [
        { os: "linux", architecture: "amd64" }, { os: "linux", architecture: "arm64" },
      ]);
      assert.deepEqual(await c.platforms(repo, "550.54.15-ubuntu22.04"), [
        { os: "linux", architecture: "amd64" }, { os: "linux", architecture: "arm64", variant: "v8" },
      ]);
      assert.deepEqual(await c.platforms(repo, "535-5.15.0-1033-aws-ubuntu22.04"), [{ os: "linux", architecture: "arm64" }]);
      assert.equal(await c.platforms(repo, "nope"), undefined);
    } finally {
      await c.close();
    }
  });

  test("hasTag checks existence, and the architecture when asked", async () => {
    const c = localClient(reg);
    try {
      assert.equal(await c.hasTag(repo, "525-5.15.0-69-generic-ubuntu22.04"), true);
      assert.equal(await c.hasTag(repo, "525-5.15.0-69-generic-ubuntu22.04", "amd64"), true);
      assert.equal(await c.hasTag(repo, "525-5.15.0-69-generic-ubuntu22.04", "arm64"), false);
      assert.equal(await c.hasTag(repo, "580-6.8.0-1046-azure-fde-ubuntu24.04", "aarch64"), true);
      assert.equal(await c.hasTag(repo, "525-5.15.0-70-generic-ubuntu22.04", "amd64"), false);
    } finally {
      await c.close();
    }
  });

  test("refuses malformed names before any request", async () => {
    const c = localClient(reg);
    try {
      await assert.rejects(c.listTags("../etc"), /"..\/etc" is not a valid repository name/);
      await assert.rejects(c.hasTag(repo, "a/b"), /"a\/b" is not a valid tag or digest/);
      assert.equal(c.requests, 0);
    } finally {
      await c.close();
    }
  });
});

/**
 * A loopback proxy in front of the real registry that answers 429 (with the
 * given Retry-After) to the first `failures` requests, then forwards.
 */
async function throttlingProxy(target: LocalRegistry, failures: number, retryAfter: string) {
  const seen = { throttled: 0, forwarded: 0 };
  const server: Server = createServer((req, res) => {
    if (seen.throttled < failures) {
      seen.throttled++;
      res.writeHead(429, { "retry-after": retryAfter, "content-type": "application/json" });
      res.end(JSON.stringify({ errors: [{ code: "TOOMANYREQUESTS", message: "slow down" }] }));
      return;
    }
    seen.forwarded++;
    const up = httpRequest(`${target.url}${req.url}`, { method: req.method, headers: { ...req.headers, host: target.host } }, (upRes) => {
      res.writeHead(upRes.statusCode ?? 502, upRes.headers);
      upRes.pipe(res);
    });
    up.on("error", () => { res.statusCode = 502; res.end(); });
    req.pipe(up);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  const addr = server.address();
  const host = `127.0.0.1:${typeof addr === "object" && addr ? addr.port : 0}`;
  return { host, seen, close: () => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }) };
}

describe("retries and failures", () => {
  test("429 with Retry-After (seconds) is waited out, then the request succeeds", async () => {
    const proxy = await throttlingProxy(reg, 1, "1");
    const c = new RegistryClient({ registry: proxy.host, plainHttp: true });
    try {
      const started = Date.now();
      assert.equal(await c.hasTag(repo, "525-5.15.0-69-generic-ubuntu22.04"), true);
      assert.deepEqual(proxy.seen, { throttled: 1, forwarded: 1 });
      assert.equal(c.requestCounts().HEAD, 2);
      // Retry-After said one second; the client must not have retried sooner.
      assert.ok(Date.now() - started >= 950, "waited for Retry-After");
    } finally {
      await c.close();
      await proxy.close();
    }
  });

  test("429 with an HTTP-date Retry-After is honoured too", async () => {
    const proxy = await throttlingProxy(reg, 2, new Date(Date.now() + 1000).toUTCString());
    const c = new RegistryClient({ registry: proxy.host, plainHttp: true, retry: { baseDelayMs: 10 } });
    try {
      const tags = await c.listTags(repo);
      assert.ok(tags.includes("525-5.15.0-69-generic-ubuntu22.04"));
      assert.equal(proxy.seen.throttled, 2);
    } finally {
      await c.close();
      await proxy.close();
    }
  });

  test("a registry asking to wait longer than the limit is reported, not hammered", async () => {
    const proxy = await throttlingProxy(reg, 1000, "3600");
    const c = new RegistryClient({ registry: proxy.host, plainHttp: true });
    try {
      await assert.rejects(c.listTags(repo), (e: unknown) => {
        assert.ok(e instanceof RegistryError);
        assert.equal(e.code, "rate-limited");
        assert.match(e.message, new RegExp(`registry ${proxy.host} is rate limiting requests \\(HTTP 429, retry after 3600 s\\).*wait and try again`));
        return true;
      });
      assert.equal(proxy.seen.throttled, 1, "no retry when Retry-After exceeds the limit");
    } finally {
      await c.close();
      await proxy.close();
    }
  });

  test("a registry that is down: unreachable, says what to check, fails fast", async () => {
    const port = await freePort(); // nothing listens here
    const c = new RegistryClient({ registry: `127.0.0.1:${port}`, plainHttp: true });
    try {
      await assert.rejects(c.ping(), (e: unknown) => {
        assert.ok(e instanceof RegistryError);
        assert.equal(e.code, "unreachable");
        assert.equal(e.message, `cannot reach registry 127.0.0.1:${port} (connection refused): is the registry running and the address right?`);
        return true;
      });
      assert.equal(c.requests, 1, "a refused connection is not retried");
    } finally {
      await c.close();
    }
  });

  test("https spoken to a plain-http registry says to use --plain-http", async () => {
    const c = new RegistryClient({ registry: reg.host, timeoutMs: 5000 });
    try {
      await assert.rejects(c.ping(), (e: unknown) => {
        assert.ok(e instanceof RegistryError);
        assert.equal(e.code, "tls");
        assert.match(e.message, /does not speak TLS: if it serves plain http, use --plain-http/);
        return true;
      });
    } finally {
      await c.close();
    }
  });

  test("a registry that accepts connections but never answers times out with a clear message", async () => {
    const silent = createServer(() => { /* never answers */ });
    await new Promise<void>((r) => silent.listen(0, "127.0.0.1", () => r()));
    const addr = silent.address();
    const host = `127.0.0.1:${typeof addr === "object" && addr ? addr.port : 0}`;
    const c = new RegistryClient({ registry: host, plainHttp: true, timeoutMs: 300, retry: { retries: 1, baseDelayMs: 10 } });
    try {
      await assert.rejects(c.ping(), (e: unknown) => {
        assert.ok(e instanceof RegistryError);
        assert.equal(e.code, "timeout");
        assert.match(e.message, new RegExp(`registry ${host} did not answer within 0.3 s: is the registry running and the address right\\?`));
        return true;
      });
      assert.equal(c.requests, 2, "one retry, then the error");
    } finally {
      await c.close();
      silent.closeAllConnections();
      silent.close();
    }
  });
});
