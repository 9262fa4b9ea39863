// What one broken or hostile registry can do to gpuop, and the limits that stop it: a token
// service asking to wait an hour, bodies larger than anything a registry sends, tag pages without
// end, a token realm over plain http for an https registry, pre-signed URLs in -v logs, escape
// sequences in error text. A real registry cannot be made to misbehave like this, so these use a
// small loopback server that speaks just enough of the distribution API; the https realm check
// uses the real registry with a token issuer.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { RegistryClient } from "../src/registry/client.ts";
import { RegistryError } from "../src/registry/errors.ts";
import { startRegistry, type LocalRegistry } from "./harness/registry.ts";

type Handler = (req: IncomingMessage, res: ServerResponse, host: string) => void;

async function fakeRegistry(handler: Handler) {
  const requests: string[] = [];
  let host = "";
  const server: Server = createServer((req, res) => {
    requests.push(`${req.method} ${req.url}`);
    handler(req, res, host);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  const addr = server.address();
  host = `127.0.0.1:${typeof addr === "object" && addr ? addr.port : 0}`;
  return {
    host,
    requests,
    close: () => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }),
  };
}

const isError = (code: string, message: RegExp) => (e: unknown) => {
  assert.ok(e instanceof RegistryError, String(e));
  assert.equal(e.code, code);
  assert.match(e.message, message);
  return true;
};

describe("a registry cannot stall or exhaust the client", () => {
  test("a token service asking to wait an hour is reported at once, not waited out", async () => {
    const reg = await fakeRegistry((req, res, host) => {
      if (req.url?.startsWith("/token")) {
        res.writeHead(429, { "retry-after": "3600" }).end();
        return;
      }
      res.writeHead(401, { "www-authenticate": `Bearer realm="http://${host}/token",service="fake"` }).end();
    });
    const c = new RegistryClient({ registry: reg.host, plainHttp: true, credentials: { username: "u", password: "p4ssw0rd", source: "test" } });
    try {
      await assert.rejects(c.hasTag("nvidia/driver", "550"), isError("rate-limited", /token service 127\.0\.0\.1:\d+ .* is rate limiting requests \(HTTP 429, retry after 3600 s\)/));
      assert.equal(reg.requests.filter((r) => r.startsWith("GET /token")).length, 1, "no retry when Retry-After exceeds the limit");
    } finally {
      await c.close();
      await reg.close();
    }
  });

  test("a manifest larger than 4 MiB is refused without reading it all", async () => {
    let sent = 0;
    const reg = await fakeRegistry((_req, res) => {
      // No content-length: the limit must hold on a streamed body too.
      res.writeHead(200, { "content-type": "application/vnd.oci.image.manifest.v1+json" });
      const chunk = Buffer.alloc(64 * 1024, 0x20);
      const pump = () => {
        while (sent < 64 * 1024 * 1024) {
          sent += chunk.length;
          if (!res.write(chunk)) return void res.once("drain", pump);
        }
        res.end();
      };
      res.on("close", () => res.destroy());
      pump();
    });
    const c = new RegistryClient({ registry: reg.host, plainHttp: true });
    try {
      await assert.rejects(c.getManifest("nvidia/driver", "550"), isError("protocol", /sent the manifest of nvidia\/driver:550 larger than 4194304 bytes/));
      assert.ok(sent < 32 * 1024 * 1024, `stopped reading early (server wrote ${sent} bytes)`);
    } finally {
      await c.close();
      await reg.close();
    }
  });

  test("a declared content-length over the limit is refused before reading", async () => {
    const reg = await fakeRegistry((_req, res) => {
      res.writeHead(200, { "content-type": "application/json", "content-length": String(100 * 1024 * 1024) });
      res.write("{");
    });
    const c = new RegistryClient({ registry: reg.host, plainHttp: true });
    try {
      await assert.rejects(c.listTags("nvidia/driver"), isError("protocol", /larger than 16777216 bytes/));
    } finally {
      await c.close();
      await reg.close();
    }
  });

  test("tag pages without end stop at the page cap", async () => {
    let page = 0;
    const reg = await fakeRegistry((_req, res) => {
      page++;
      res.writeHead(200, { "content-type": "application/json", link: `</v2/nvidia/driver/tags/list?n=2&last=t${page}>; rel="next"` });
      res.end(JSON.stringify({ name: "nvidia/driver", tags: [`t${page}a`, `t${page}b`] }));
    });
    const c = new RegistryClient({ registry: reg.host, plainHttp: true, maxTagPages: 7 });
    try {
      await assert.rejects(c.listTags("nvidia/driver", { pageSize: 2 }), isError("protocol", /kept sending tag pages for nvidia\/driver: stopped after 7 pages \(14 tags\)/));
      assert.equal(reg.requests.length, 7);
    } finally {
      await c.close();
      await reg.close();
    }
  });

  test("a call's deadline ends it while the registry holds the connection open", async () => {
    const reg = await fakeRegistry(() => { /* never answers */ });
    const c = new RegistryClient({ registry: reg.host, plainHttp: true, timeoutMs: 600_000 });
    try {
      await assert.rejects(c.hasTag("nvidia/driver", "550", "amd64", { signal: AbortSignal.timeout(200) }), isError("timeout", /gave no answer before the check's deadline/));
    } finally {
      await c.close();
      await reg.close();
    }
  });

  test("escape sequences in a registry's error text do not reach the message", async () => {
    const reg = await fakeRegistry((_req, res) => {
      res.writeHead(400, { "content-type": "application/json" });
      res.end(JSON.stringify({ errors: [{ code: "DENIED", message: "\u001b]0;pwned\u0007\u001b[2Jgone\nnext" }] }));
    });
    const c = new RegistryClient({ registry: reg.host, plainHttp: true });
    try {
      await assert.rejects(c.getManifest("nvidia/driver", "550"), (e: Error) => {
        // eslint-disable-next-line no-control-regex
        assert.doesNotMatch(e.message, /[\u0000-\u001f]/);
        assert.match(e.message, /DENIED: \uFFFD\]0;pwned\uFFFD\uFFFD\[2Jgone next/);
        return true;
      });
    } finally {
      await c.close();
      await reg.close();
    }
  });

  test("-v logs show no query strings (pre-signed blob URLs carry their signature there)", async () => {
    const reg = await fakeRegistry((req, res, host) => {
      if (req.url?.startsWith("/v2/nvidia/driver/blobs/")) {
        res.writeHead(307, { location: `http://${host}/storage/blob?X-Amz-Signature=s3cr3tsig&X-Amz-Credential=AKIAXYZ` }).end();
        return;
      }
      res.writeHead(200, { "content-type": "application/octet-stream" }).end("{}");
    });
    const lines: string[] = [];
    const c = new RegistryClient({ registry: reg.host, plainHttp: true, log: (l) => lines.push(l) });
    try {
      await c.getBlob("nvidia/driver", `sha256:${"a".repeat(64)}`);
      assert.ok(lines.some((l) => l.includes("/storage/blob")), lines.join("\n"));
      assert.doesNotMatch(lines.join("\n"), /s3cr3tsig|AKIAXYZ/);
    } finally {
      await c.close();
      await reg.close();
    }
  });
});

describe("credentials go to a token realm only over https when the registry is https", () => {
  let reg: LocalRegistry;
  before(async () => {
    // The real registry over https, with a token issuer served over plain http.
    reg = await startRegistry({ tls: true, auth: "token", users: { ci: "t0ken-pass" } });
  });
  after(async () => {
    await reg?.stop();
  });

  test("an http realm for an https registry is refused before any credential is sent", async () => {
    assert.match(reg.issuer!.url, /^http:\/\//);
    const realms: string[] = [];
    const c = new RegistryClient({ registry: reg.host, ca: reg.ca!, credentials: { username: "ci", password: "t0ken-pass", source: "test" }, onRealm: (h) => realms.push(h) });
    try {
      await assert.rejects(c.listTags("nvidia/driver"), isError("tls", /is spoken to over https but names a token service over plain http \(127\.0\.0\.1:\d+\); gpuop does not send credentials there/));
      assert.deepEqual(reg.issuer!.counts, { issued: 0, denied: 0 });
      assert.deepEqual(realms, []);
    } finally {
      await c.close();
    }
  });
});
