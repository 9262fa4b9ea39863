// A real OCI registry for tests and benchmarks: the CNCF distribution
// registry v3 (built by hack/build-tools.sh) or Debian's docker-registry 2.8,
// started on 127.0.0.1 with a free port in a temp dir, with no auth, htpasswd
// basic auth, or bearer tokens from a token issuer run in this process.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { createHash, generateKeyPairSync, randomBytes, sign, type KeyObject } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { createServer as createNetServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import bcrypt from "bcryptjs";
import { Agent, request as undiciRequest } from "undici";
import { stringify as toYaml } from "yaml";
import { RegistryClient } from "../../src/registry/client.ts";
import { MediaType, type Platform } from "../../src/registry/manifest.ts";
import { mapLimit } from "../../src/registry/pool.ts";
import { toolPath } from "./tools.ts";

export type RegistryAuth = "none" | "basic" | "token";

export interface RegistryOptions {
  auth?: RegistryAuth;
  /** Accounts for basic and token auth: username → password. */
  users?: Record<string, string>;
  /** Token auth: whether a request without credentials may pull (as nvcr.io allows for public images). */
  anonymousPull?: boolean;
  /** Token auth: a refresh token accepted by the OAuth2 POST flow (docker config's identitytoken). */
  refreshToken?: string;
  /** Token lifetime in seconds (default 300). */
  tokenSeconds?: number;
  /** v3 only: the most tags one page returns, whatever `n` asks for. */
  maxTags?: number;
  /** "v3" (default): the CNCF registry; "debian": Debian's docker-registry 2.8. */
  flavor?: "v3" | "debian";
  /** Serve https with a fresh self-signed CA (openssl); its PEM is LocalRegistry.ca. */
  tls?: boolean;
}

export interface LocalRegistry {
  /** host:port, as an image reference names it. */
  host: string;
  /** http://host:port */
  url: string;
  auth: RegistryAuth;
  /** The token issuer, when auth is "token". */
  issuer?: TokenIssuer;
  /** The CA certificate (PEM) that signed the registry's certificate, when tls is on. */
  ca?: string;
  /** The registry's stderr so far (for failure messages). */
  logs(): string;
  stop(): Promise<void>;
}

/** Debian's docker-registry binary, or undefined when it is not installed. */
export function debianRegistryBinary(): string | undefined {
  return existsSync("/usr/bin/docker-registry") ? "/usr/bin/docker-registry" : undefined;
}

/** A TCP port free on 127.0.0.1 right now. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createNetServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      const port = typeof addr === "object" && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

export async function startRegistry(opts: RegistryOptions = {}): Promise<LocalRegistry> {
  const auth = opts.auth ?? "none";
  const flavor = opts.flavor ?? "v3";
  const binary = flavor === "v3" ? toolPath("registry") : debianRegistryBinary();
  if (!binary) throw new Error("Debian's docker-registry is not installed: apt-get install -y docker-registry");
  const dir = mkdtempSync(join(tmpdir(), "gpuop-registry-"));
  const port = await freePort();
  const host = `127.0.0.1:${port}`;

  const config: Record<string, unknown> = {
    version: 0.1,
    log: { level: "warn", accesslog: { disabled: true } },
    // In memory: fast, and nothing to clean up but the process.
    storage: { inmemory: {}, delete: { enabled: true }, maintenance: { uploadpurging: { enabled: false } } },
    http: { addr: host, secret: randomBytes(16).toString("hex") },
    health: { storagedriver: { enabled: false } },
  };
  if (opts.maxTags !== undefined) config.tags = { maxtags: opts.maxTags };
  let ca: string | undefined;
  if (opts.tls) {
    ca = makeCertificate(dir);
    (config.http as Record<string, unknown>).tls = { certificate: join(dir, "server.crt"), key: join(dir, "server.key") };
  }

  let issuer: TokenIssuer | undefined;
  if (auth === "basic") {
    const lines = Object.entries(opts.users ?? {}).map(([u, p]) => `${u}:${bcrypt.hashSync(p, 5)}`);
    writeFileSync(join(dir, "htpasswd"), lines.join("\n") + "\n");
    config.auth = { htpasswd: { realm: "gpuop-test", path: join(dir, "htpasswd") } };
  } else if (auth === "token") {
    issuer = await startTokenIssuer({
      users: opts.users ?? {}, anonymousPull: opts.anonymousPull ?? false,
      refreshToken: opts.refreshToken, tokenSeconds: opts.tokenSeconds ?? 300,
    });
    writeFileSync(join(dir, "jwks.json"), JSON.stringify(issuer.jwks));
    config.auth = { token: { realm: `${issuer.url}/token`, service: issuer.service, issuer: issuer.issuer, jwks: join(dir, "jwks.json") } };
  }
  writeFileSync(join(dir, "config.yml"), toYaml(config));

  const child = spawn(binary, ["serve", join(dir, "config.yml")], { cwd: dir, stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  child.stderr?.on("data", (d: Buffer) => { stderr = (stderr + d.toString()).slice(-20_000); });
  let exited = false;
  child.on("exit", () => { exited = true; });

  const stop = async () => {
    await killProcess(child);
    await issuer?.close();
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await waitListening(opts.tls ? `https://${host}/v2/` : `http://${host}/v2/`, () => exited, () => stderr, ca);
  } catch (err) {
    await stop();
    throw err;
  }
  return { host, url: `${opts.tls ? "https" : "http"}://${host}`, auth, ...(issuer ? { issuer } : {}), ...(ca ? { ca } : {}), logs: () => stderr, stop };
}

/** A CA and a server certificate for 127.0.0.1 signed by it, written into `dir`; returns the CA's PEM. */
function makeCertificate(dir: string): string {
  const run = (args: string[]) => {
    const r = spawnSync("openssl", args, { cwd: dir, encoding: "utf8" });
    if (r.status !== 0) throw new Error(`openssl ${args.join(" ")}: ${r.stderr || r.error?.message}`);
  };
  run(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1", "-subj", "/CN=gpuop test CA", "-keyout", "ca.key", "-out", "ca.crt"]);
  run(["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", "server.key", "-out", "server.csr"]);
  writeFileSync(join(dir, "san.ext"), "subjectAltName=IP:127.0.0.1\n");
  run(["x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days", "1", "-extfile", "san.ext", "-out", "server.crt"]);
  return readFileSync(join(dir, "ca.crt"), "utf8");
}

async function waitListening(url: string, exited: () => boolean, logs: () => string, ca?: string): Promise<void> {
  const deadline = Date.now() + 20_000;
  const dispatcher = new Agent({ connect: ca ? { ca } : {} });
  for (;;) {
    if (exited()) throw new Error(`registry exited at start:\n${logs()}`);
    try {
      const res = await undiciRequest(url, { dispatcher });
      await res.body.dump();
      await dispatcher.close();
      return; // 200 or 401: it is serving
    } catch { /* not yet */ }
    if (Date.now() > deadline) throw new Error(`registry did not answer ${url} within 20 s:\n${logs()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function killProcess(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const done = new Promise<void>((r) => child.once("exit", () => r()));
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), 3000);
  await done;
  clearTimeout(timer);
}

// ---- token issuer ----

export interface TokenIssuer {
  url: string;
  service: string;
  issuer: string;
  jwks: { keys: Record<string, unknown>[] };
  /** Token requests answered, by outcome: "issued", "denied". */
  counts: { issued: number; denied: number };
  close(): Promise<void>;
}

interface IssuerOptions {
  users: Record<string, string>;
  anonymousPull: boolean;
  refreshToken: string | undefined;
  tokenSeconds: number;
}

const b64url = (b: Buffer | string) => Buffer.from(b).toString("base64url");

/**
 * A token server as the distribution spec describes it: GET /token with
 * optional basic auth (and POST for the OAuth2 refresh-token flow), answering
 * ES256 JWTs the registry trusts through a JWKS file.
 */
async function startTokenIssuer(opts: IssuerOptions): Promise<TokenIssuer> {
  const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const kid = createHash("sha256").update(publicKey.export({ format: "der", type: "spki" })).digest("hex").slice(0, 16);
  const service = "gpuop-test-registry";
  const issuerName = "gpuop-test-issuer";
  const counts = { issued: 0, denied: 0 };

  const server: Server = createServer((req, res) => {
    void handleToken(req, res).catch(() => { res.statusCode = 500; res.end(); });
  });
  async function handleToken(req: IncomingMessage, res: ServerResponse) {
    const url = new URL(req.url ?? "/", "http://x");
    if (url.pathname !== "/token") { res.statusCode = 404; res.end(); return; }
    let user: string | undefined;
    let scopes: string[] = url.searchParams.getAll("scope");
    let authenticated = false;
    if (req.method === "POST") {
      const chunks: Buffer[] = [];
      for await (const c of req) chunks.push(c as Buffer);
      const form = new URLSearchParams(Buffer.concat(chunks).toString());
      scopes = form.getAll("scope");
      if (form.get("grant_type") !== "refresh_token" || !opts.refreshToken || form.get("refresh_token") !== opts.refreshToken) {
        return deny(res);
      }
      user = "refresh-token-user";
      authenticated = true;
    } else {
      const header = req.headers.authorization;
      if (header?.startsWith("Basic ")) {
        const decoded = Buffer.from(header.slice(6), "base64").toString();
        const i = decoded.indexOf(":");
        const [u, p] = [decoded.slice(0, i), decoded.slice(i + 1)];
        if (i < 0 || opts.users[u] === undefined || opts.users[u] !== p) return deny(res);
        user = u;
        authenticated = true;
      }
    }
    // Like Docker Hub: anonymous requests get a token, with only what anonymous users may do.
    const access = scopes.flatMap((s) => s.split(" ")).filter(Boolean).map((s) => {
      const [type, ...rest] = s.split(":");
      const actions = (rest.pop() ?? "").split(",").filter(Boolean);
      const name = rest.join(":");
      const allowed = authenticated ? actions : opts.anonymousPull ? actions.filter((a) => a === "pull") : [];
      return { type, name, actions: allowed };
    });
    const now = Math.floor(Date.now() / 1000);
    const claims = {
      iss: issuerName, sub: user ?? "", aud: service, exp: now + opts.tokenSeconds, nbf: now - 10, iat: now,
      jti: randomBytes(8).toString("hex"), access,
    };
    const token = signJwt({ alg: "ES256", typ: "JWT", kid }, claims, privateKey);
    counts.issued++;
    res.setHeader("content-type", "application/json");
    const body = req.method === "POST"
      ? { access_token: token, expires_in: opts.tokenSeconds, issued_at: new Date().toISOString() }
      : { token, access_token: token, expires_in: opts.tokenSeconds, issued_at: new Date().toISOString() };
    res.end(JSON.stringify(body));
  }
  function deny(res: ServerResponse) {
    counts.denied++;
    res.statusCode = 401;
    res.setHeader("content-type", "application/json");
    res.end(JSON.stringify({ details: "incorrect username or password" }));
  }

  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  const addr = server.address();
  const port = typeof addr === "object" && addr ? addr.port : 0;
  const jwk = { ...publicKey.export({ format: "jwk" }), kid, alg: "ES256", use: "sig" };
  return {
    url: `http://127.0.0.1:${port}`, service, issuer: issuerName, jwks: { keys: [jwk] }, counts,
    close: () => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }),
  };
}

function signJwt(header: object, claims: object, key: KeyObject): string {
  const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
  const sig = sign("sha256", Buffer.from(input), { key, dsaEncoding: "ieee-p1363" });
  return `${input}.${b64url(sig)}`;
}

// ---- content ----

/** A client for a local registry (plain http), with the given credentials. */
export function localClient(reg: LocalRegistry, credentials?: { username: string; password: string }): RegistryClient {
  return new RegistryClient({
    registry: reg.host, plainHttp: true,
    ...(credentials ? { credentials: { ...credentials, source: "test credentials" } } : {}),
    retry: { baseDelayMs: 20 },
  });
}

export interface PushedImage { digest: string; size: number; mediaType: string }

/**
 * Pushes one small single-platform image (a config blob and one tiny layer)
 * and tags it; returns its manifest's digest.
 */
export async function pushImage(
  client: RegistryClient, repository: string, tags: string[],
  opts: { arch?: string; docker?: boolean; concurrency?: number; salt?: string } = {},
): Promise<PushedImage> {
  const arch = opts.arch ?? "amd64";
  const layer = Buffer.from(`gpuop test layer ${arch} ${opts.salt ?? ""}\n`);
  const config = Buffer.from(JSON.stringify({
    architecture: arch, os: "linux",
    rootfs: { type: "layers", diff_ids: [`sha256:${createHash("sha256").update(layer).digest("hex")}`] },
    config: {},
  }));
  const [configDigest, layerDigest] = await Promise.all([client.pushBlob(repository, config), client.pushBlob(repository, layer)]);
  const manifest = Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: opts.docker ? MediaType.dockerManifest : MediaType.ociManifest,
    config: { mediaType: opts.docker ? MediaType.dockerConfig : MediaType.ociConfig, digest: configDigest, size: config.length },
    layers: [{ mediaType: opts.docker ? "application/vnd.docker.image.rootfs.diff.tar.gzip" : MediaType.ociLayer, digest: layerDigest, size: layer.length }],
  }));
  const mediaType = opts.docker ? MediaType.dockerManifest : MediaType.ociManifest;
  const digest = `sha256:${createHash("sha256").update(manifest).digest("hex")}`;
  await client.putManifest(repository, digest, manifest, mediaType);
  await mapLimit(tags, opts.concurrency ?? 8, (tag) => client.putManifest(repository, tag, manifest, mediaType));
  return { digest, size: manifest.length, mediaType };
}

/** Pushes one image per platform and an index (OCI, or a Docker manifest list) listing them under `tag`. */
export async function pushIndex(
  client: RegistryClient, repository: string, tag: string, platforms: Platform[], opts: { docker?: boolean } = {},
): Promise<string> {
  const images = [];
  for (const p of platforms) {
    images.push({ p, image: await pushImage(client, repository, [], { arch: p.architecture, docker: opts.docker ?? false, salt: tag }) });
  }
  const mediaType = opts.docker ? MediaType.dockerList : MediaType.ociIndex;
  const index = JSON.stringify({
    schemaVersion: 2,
    mediaType,
    manifests: images.map(({ p, image }) => ({ mediaType: image.mediaType, digest: image.digest, size: image.size, platform: p })),
  });
  return client.putManifest(repository, tag, index, mediaType);
}

/** Whether Debian's docker-registry can be installed here (apt present), for a clear skip message otherwise. */
export function ensureDebianRegistry(): string | undefined {
  const have = debianRegistryBinary();
  if (have) return have;
  if (process.getuid?.() !== 0 || spawnSync("sh", ["-c", "command -v apt-get"]).status !== 0) return undefined;
  const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
  const install = () => spawnSync("apt-get", ["install", "-y", "--no-install-recommends", "docker-registry"], { stdio: "ignore", env }).status === 0;
  // A fresh machine has no package lists yet: update once, then try again.
  if (!install() && spawnSync("apt-get", ["update"], { stdio: "ignore", env }).status === 0) install();
  return debianRegistryBinary();
}
