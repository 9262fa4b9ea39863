// Registry auth against real registries: htpasswd basic auth, and bearer
// tokens from a token issuer the registry trusts (the flow of nvcr.io, Docker
// Hub and GHCR); credentials from a docker config.json. No error message and
// no log line may hold a password or token.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { createServer, request as httpRequest, type IncomingHttpHeaders, type Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { RegistryClient } from "../src/registry/client.ts";
import { CredentialStore } from "../src/registry/credentials.ts";
import { RegistryError } from "../src/registry/errors.ts";
import { localClient, pushImage, startRegistry, type LocalRegistry } from "./harness/registry.ts";
import { eventually } from "./harness/wait.ts";

const repo = "nvidia/driver";
const tag = "525-5.15.0-69-generic-ubuntu22.04";
const password = "Sup3r-Secret-Pw!";
const wrongPassword = "Wr0ng-Secret-Pw!";
const refreshToken = "refresh-TOKEN-0123456789";
const users = { ci: password };

/** Every string a secret could appear as. */
const secretForms = (...secrets: string[]) => secrets.flatMap((s) => [s, Buffer.from(`ci:${s}`).toString("base64")]);

function assertNoSecrets(text: string, ...secrets: string[]) {
  for (const s of secretForms(...secrets)) assert.ok(!text.includes(s), `"${text}" leaks a secret`);
}

/** A client that records its log lines, to check they hold no secrets. */
function loggingClient(reg: LocalRegistry, credentials?: ConstructorParameters<typeof RegistryClient>[0]["credentials"]) {
  const lines: string[] = [];
  const client = new RegistryClient({
    registry: reg.host, plainHttp: true, retry: { baseDelayMs: 10 },
    ...(credentials ? { credentials } : {}),
    log: (l) => lines.push(l),
  });
  return { client, lines };
}

let basic: LocalRegistry;
let token: LocalRegistry;
let publicToken: LocalRegistry;

before(async () => {
  [basic, token, publicToken] = await Promise.all([
    startRegistry({ auth: "basic", users }),
    startRegistry({ auth: "token", users, refreshToken }),
    startRegistry({ auth: "token", users, anonymousPull: true }),
  ]);
  for (const reg of [basic, token, publicToken]) {
    const c = localClient(reg, { username: "ci", password });
    try {
      await pushImage(c, repo, [tag, "535-5.15.0-118-generic-ubuntu22.04"]);
    } finally {
      await c.close();
    }
  }
});

after(async () => {
  await Promise.all([basic?.stop(), token?.stop(), publicToken?.stop()]);
});

describe("basic auth (htpasswd)", () => {
  test("the right credentials list tags and read manifests", async () => {
    const { client, lines } = loggingClient(basic, { username: "ci", password, source: "test" });
    try {
      assert.deepEqual(await client.listTags(repo), ["525-5.15.0-69-generic-ubuntu22.04", "535-5.15.0-118-generic-ubuntu22.04"]);
      assert.equal(await client.hasTag(repo, tag, "amd64"), true);
      assert.ok(lines.length > 0);
      assertNoSecrets(lines.join("\n"), password);
    } finally {
      await client.close();
    }
  });

  test("wrong credentials: names where they came from, never the password", async () => {
    const { client, lines } = loggingClient(basic, { username: "ci", password: wrongPassword, source: "docker config /tmp/x/config.json" });
    try {
      await assert.rejects(client.listTags(repo), (e: unknown) => {
        assert.ok(e instanceof RegistryError);
        assert.equal(e.code, "unauthorized");
        assert.equal(e.message, `registry ${basic.host} rejected the credentials for access to ${repo}: check the credentials in docker config /tmp/x/config.json`);
        assertNoSecrets(e.message + String(e.stack), wrongPassword);
        return true;
      });
      assertNoSecrets(lines.join("\n"), wrongPassword);
    } finally {
      await client.close();
    }
  });

  test("no credentials: says how to give them", async () => {
    const { client } = loggingClient(basic);
    try {
      await assert.rejects(client.listTags(repo), (e: unknown) => {
        assert.ok(e instanceof RegistryError && e.code === "unauthorized");
        assert.match(e.message, new RegExp(`registry ${basic.host} requires credentials for access to ${repo}: log in .* --docker-config, or name a pull secret with --pull-secret$`));
        return true;
      });
    } finally {
      await client.close();
    }
  });

  test("credentials from a docker config.json, keyed by host in any spelling", async () => {
    const dir = mkdtempSync(join(tmpdir(), "gpuop-dockercfg-"));
    const path = join(dir, "config.json");
    writeFileSync(path, JSON.stringify({ auths: { [`http://${basic.host}/v2/`]: { auth: Buffer.from(`ci:${password}`).toString("base64") } } }));
    const creds = CredentialStore.fromFile(path).for(basic.host);
    assert.equal(creds?.source, `docker config ${path}`);
    const c = new RegistryClient({ registry: basic.host, plainHttp: true, credentials: creds! });
    try {
      assert.equal(await c.hasTag(repo, tag), true);
    } finally {
      await c.close();
    }
    writeFileSync(path, JSON.stringify({ auths: { [basic.host]: { username: "ci", password: wrongPassword } } }));
    const bad = new RegistryClient({ registry: basic.host, plainHttp: true, credentials: CredentialStore.fromFile(path).for(basic.host)! });
    try {
      await assert.rejects(bad.listTags(repo), (e: Error) => e.message.endsWith(`check the credentials in docker config ${path}`) && !e.message.includes(wrongPassword));
    } finally {
      await bad.close();
    }
  });
});

describe("bearer tokens (the nvcr.io / Docker Hub / GHCR flow)", () => {
  test("follows the challenge to the token service with credentials, and caches the token per scope", async () => {
    const { client, lines } = loggingClient(token, { username: "ci", password, source: "test" });
    const issuedBefore = token.issuer!.counts.issued;
    try {
      assert.equal((await client.listTags(repo)).length, 2);
      for (let i = 0; i < 20; i++) assert.equal(await client.hasTag(repo, tag), true);
      // One token for repository:nvidia/driver:pull, reused for all 21 requests.
      assert.equal(token.issuer!.counts.issued - issuedBefore, 1);
      assertNoSecrets(lines.join("\n"), password);
      assert.ok(!lines.join("\n").includes("eyJ"), "no JWT in the log");
    } finally {
      await client.close();
    }
  });

  test("wrong credentials are refused by the token service: message names the source, not the secret", async () => {
    const { client, lines } = loggingClient(token, { username: "ci", password: wrongPassword, source: "pull secret gpu-operator/ngc-secret" });
    try {
      await assert.rejects(client.hasTag(repo, tag), (e: unknown) => {
        assert.ok(e instanceof RegistryError);
        assert.equal(e.code, "unauthorized");
        assert.match(e.message, new RegExp(`registry ${token.host} \\(its token service 127.0.0.1:\\d+\\) rejected the credentials.*: check the credentials in pull secret gpu-operator/ngc-secret$`));
        assertNoSecrets(e.message, wrongPassword);
        return true;
      });
      assertNoSecrets(lines.join("\n"), wrongPassword);
    } finally {
      await client.close();
    }
  });

  test("anonymous: a public repository works, a private one says credentials are needed", async () => {
    const pub = new RegistryClient({ registry: publicToken.host, plainHttp: true });
    const priv = new RegistryClient({ registry: token.host, plainHttp: true });
    try {
      assert.equal(await pub.hasTag(repo, tag), true);
      await assert.rejects(priv.listTags(repo), (e: unknown) => {
        assert.ok(e instanceof RegistryError && e.code === "unauthorized");
        assert.match(e.message, /requires credentials for access to nvidia\/driver/);
        return true;
      });
    } finally {
      await pub.close();
      await priv.close();
    }
  });

  test("a docker config identitytoken uses the OAuth2 refresh-token flow", async () => {
    const store = CredentialStore.fromDockerConfig({ auths: { [token.host]: { identitytoken: refreshToken } } }, "docker config test");
    const { client, lines } = loggingClient(token, store.for(token.host)!);
    try {
      assert.equal(await client.hasTag(repo, tag, "amd64"), true);
      assert.equal(client.requestCounts().POST, 1, "one token request by POST");
      assertNoSecrets(lines.join("\n"), refreshToken);
    } finally {
      await client.close();
    }
    const wrong = new RegistryClient({ registry: token.host, plainHttp: true, credentials: { identityToken: "not-the-token-123", source: "docker config test" } });
    try {
      await assert.rejects(wrong.hasTag(repo, tag), (e: Error) => /check the credentials in docker config test$/.test(e.message) && !e.message.includes("not-the-token-123"));
    } finally {
      await wrong.close();
    }
  });

  test("pushes take a push-scoped token; concurrent requests share one token request", async () => {
    const c = localClient(token, { username: "ci", password });
    const issuedBefore = token.issuer!.counts.issued;
    try {
      await pushImage(c, "other/repo", Array.from({ length: 30 }, (_, i) => `t${i}`), { concurrency: 10 });
      assert.equal((await c.listTags("other/repo")).length, 30);
      // One push-scoped and one pull-scoped token, however many requests ran at once.
      assert.equal(token.issuer!.counts.issued - issuedBefore, 2);
    } finally {
      await c.close();
    }
  });
});

/**
 * A loopback front for `target` that sends blob GETs to a "storage" server on another origin
 * (another port), as registries backed by S3 or a CDN do; storage records the headers it got and
 * serves the blob, fetched from the registry with its own credentials.
 */
async function redirectingFront(target: LocalRegistry, storageAuth: string) {
  const storageSaw: IncomingHttpHeaders[] = [];
  const frontSawAuth: boolean[] = [];
  const listen = async (server: Server) => {
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
    return `127.0.0.1:${(server.address() as { port: number }).port}`;
  };
  const forward = (path: string, req: { method?: string; headers: IncomingHttpHeaders; pipe(d: NodeJS.WritableStream): unknown }, res: import("node:http").ServerResponse, headers: IncomingHttpHeaders) => {
    const up = httpRequest(`${target.url}${path}`, { method: req.method, headers: { ...headers, host: target.host } }, (upRes) => {
      res.writeHead(upRes.statusCode ?? 502, upRes.headers);
      upRes.pipe(res);
    });
    up.on("error", () => { res.statusCode = 502; res.end(); });
    req.pipe(up);
  };
  const storage = createServer((req, res) => {
    storageSaw.push(req.headers);
    const { authorization: _dropped, ...rest } = req.headers;
    forward(new URL(req.url!, "http://x").searchParams.get("path")!, req, res, { ...rest, authorization: storageAuth });
  });
  const storageHost = await listen(storage);
  const front = createServer((req, res) => {
    if (req.method === "GET" && /^\/v2\/.+\/blobs\/sha256:/.test(req.url!) && req.headers.authorization) {
      frontSawAuth.push(true);
      res.writeHead(307, { location: `http://${storageHost}/blob?path=${encodeURIComponent(req.url!)}` });
      res.end();
      return;
    }
    forward(req.url!, req, res, req.headers);
  });
  const host = await listen(front);
  const close = (server: Server) => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); });
  return { host, storageSaw, frontSawAuth, close: async () => { await close(front); await close(storage); } };
}

describe("redirects and token lifetime", () => {
  test("a redirect to another origin (blob storage) is followed without the Authorization header", async () => {
    const front = await redirectingFront(basic, `Basic ${Buffer.from(`ci:${password}`).toString("base64")}`);
    const client = new RegistryClient({ registry: front.host, plainHttp: true, credentials: { username: "ci", password, source: "test" } });
    try {
      // A single-platform image: the architecture is in its config blob, which the front redirects.
      assert.equal(await client.hasTag(repo, tag, "amd64"), true);
      assert.equal(front.frontSawAuth.length, 1, "the blob request reached the front with credentials");
      assert.equal(front.storageSaw.length, 1, "and was redirected to storage");
      assert.equal(front.storageSaw[0]!.authorization, undefined, "storage, another origin, got no credentials");
    } finally {
      await client.close();
      await front.close();
    }
  });

  test("a bearer token is renewed before it expires, without a refused request", async () => {
    // 11 s tokens: the client renews 5.5 s after issue (half the lifetime early, for tokens this short).
    const shortLived = await startRegistry({ auth: "token", users, tokenSeconds: 11 });
    const { client, lines } = loggingClient(shortLived, { username: "ci", password, source: "test" });
    try {
      const seed = localClient(shortLived, { username: "ci", password });
      try {
        await pushImage(seed, repo, [tag]);
      } finally {
        await seed.close();
      }
      const issued = () => shortLived.issuer!.counts.issued;
      assert.equal(await client.hasTag(repo, tag), true);
      const first = issued();
      const firstLines = lines.length;
      let checks = 0;
      await eventually("a second token", async () => {
        assert.equal(await client.hasTag(repo, tag), true);
        checks++;
        return issued() > first ? true : undefined;
      }, { timeoutMs: 60_000, intervalMs: 500 });
      assert.equal(issued(), first + 1, "one renewal");
      assert.ok(checks > 1, "the first token served requests before it was renewed");
      // Renewed ahead of expiry: the registry never refused the old token.
      const later = lines.slice(firstLines).join("\n");
      assert.doesNotMatch(later, /-> 401/, later);
    } finally {
      await client.close();
      await shortLived.stop();
    }
  });
});
