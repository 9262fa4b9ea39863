import { createHash } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { HttpAgent, request, type IncomingHttpHeaders, type ResponseBody } from "../http/transport.ts";
import { UserError } from "../core/errors.ts";
import { stripControl } from "../core/security.ts";
import { parseChallenges, type Challenge } from "./challenge.ts";
import { normalizeRegistryHost, type Credentials } from "./credentials.ts";
import { RegistryError, type RegistryErrorCode } from "./errors.ts";
import {
  indexPlatforms, isImageMediaType, isIndexMediaType, manifestAccept, manifestMediaType, normalizeArch,
  type ManifestBody, type Platform,
} from "./manifest.ts";
import { nextLink } from "./pagination.ts";
import { mapLimit } from "./pool.ts";
import { backoffDelay, defaultRetryPolicy, isRetryableStatus, parseRetryAfter, type RetryPolicy } from "./retry.ts";

export interface RegistryClientOptions {
  /** host[:port] as an image reference names it (`nvcr.io`, `127.0.0.1:5000`, `docker.io`). */
  registry: string;
  /** Credentials for this registry; anonymous when absent. */
  credentials?: Credentials;
  /** Speak http instead of https (local registries). */
  plainHttp?: boolean;
  /** Accept any TLS certificate. */
  insecure?: boolean;
  /** Extra trusted CA certificates (PEM). */
  ca?: string | Buffer;
  /** Per-request limit, connect to last body byte; default 30 s. */
  timeoutMs?: number;
  retry?: Partial<RetryPolicy>;
  /** Connections kept per origin; default 16. */
  connections?: number;
  /** Debug log of requests (method, URL without its query, status, time): never headers or bodies. */
  log?: (line: string) => void;
  /** Called once per token service host other than the registry's own (the operator logs it). */
  onRealm?: (host: string) => void;
  /** Tag list pages followed before giving up on a registry that keeps sending more; default 1000. */
  maxTagPages?: number;
}

/** A call's own limits, on top of the client's per-request timeout. */
export interface CallOptions {
  /** Aborts the call (its requests, retries and waits): a deadline for the whole check. */
  signal?: AbortSignal;
}

/**
 * The most gpuop reads of each kind of response, so that a hostile or broken registry cannot
 * exhaust the operator's memory (its pod has 256 MiB). Manifests: the distribution spec lets
 * registries refuse more than 4 MiB. Tag pages and tokens are JSON of a few hundred KiB at most.
 */
export const BODY_LIMITS = {
  manifest: 4 * 1024 * 1024,
  json: 16 * 1024 * 1024,
  blob: 16 * 1024 * 1024,
  error: 64 * 1024,
} as const;
export const DEFAULT_MAX_TAG_PAGES = 1000;

/** A manifest's identity as HEAD reports it. */
export interface ManifestDescriptor {
  mediaType: string;
  digest: string;
  size: number;
}

export interface Manifest extends ManifestDescriptor {
  body: ManifestBody;
  /** True for an OCI index or Docker manifest list. */
  isIndex: boolean;
}

interface Response {
  status: number;
  headers: IncomingHttpHeaders;
  body: ResponseBody;
  url: string;
}

interface SendOptions {
  /** Bearer scope the request needs (`repository:x:pull`). */
  scope?: string;
  headers?: Record<string, string>;
  body?: Buffer | string;
  /** Repository the request is about, for error messages. */
  repository?: string;
  signal?: AbortSignal | undefined;
}

interface BearerState { scheme: "bearer"; realm: string; service: string | undefined }
type AuthState = { scheme: "none" } | { scheme: "basic" } | BearerState;

interface Token { value: string; expiresAt: number }

// Distribution spec grammar; checked before a name becomes part of a URL path.
const repositoryPattern = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$/;
const tagPattern = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;
const digestPattern = /^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[A-Za-z0-9=_-]+$/;

const first = (v: string | string[] | undefined) => (Array.isArray(v) ? v[0] : v);

/**
 * An OCI distribution client for one registry: ping, tags, manifests,
 * platforms, blob and manifest pushes. It follows the registry's auth
 * challenge (bearer tokens cached per scope, or basic), retries 429 and 5xx
 * with backoff, and counts its requests by method.
 */
export class RegistryClient {
  /** The registry as the user named it (host[:port]). */
  readonly registry: string;
  private readonly base: string;
  private readonly credentials: Credentials | undefined;
  private readonly agent: HttpAgent;
  private readonly timeoutMs: number;
  private readonly policy: RetryPolicy;
  private readonly log: ((line: string) => void) | undefined;
  private readonly plainHttp: boolean;
  private readonly maxTagPages: number;
  private auth: AuthState | undefined;
  private readonly tokens = new Map<string, Token>();
  private readonly pendingTokens = new Map<string, Promise<Token>>();
  private readonly secrets = new Set<string>();
  private readonly counts = new Map<string, number>();
  private readonly realmHosts = new Set<string>();
  private readonly onRealm: ((host: string) => void) | undefined;

  constructor(opts: RegistryClientOptions) {
    this.registry = opts.registry;
    this.plainHttp = opts.plainHttp ?? false;
    // Docker Hub's API lives on another host than its name in references.
    const apiHost = normalizeRegistryHost(opts.registry) === "docker.io" ? "registry-1.docker.io" : opts.registry;
    this.base = `${this.plainHttp ? "http" : "https"}://${apiHost}`;
    this.credentials = opts.credentials;
    this.timeoutMs = opts.timeoutMs ?? 30_000;
    this.policy = { ...defaultRetryPolicy, ...opts.retry };
    this.log = opts.log;
    this.maxTagPages = opts.maxTagPages ?? DEFAULT_MAX_TAG_PAGES;
    this.onRealm = opts.onRealm;
    for (const s of [opts.credentials?.password, opts.credentials?.identityToken]) if (s) this.secrets.add(s);
    if (opts.credentials?.username !== undefined && opts.credentials.password !== undefined) {
      this.secrets.add(basicValue(opts.credentials.username, opts.credentials.password));
    }
    this.agent = new HttpAgent({
      maxSockets: opts.connections ?? 16,
      keepAliveMs: 10_000,
      ...(opts.ca ? { ca: opts.ca } : {}),
      rejectUnauthorized: !opts.insecure,
    });
  }

  /** Requests made so far, by HTTP method (token requests included). */
  requestCounts(): Record<string, number> {
    return Object.fromEntries([...this.counts].sort(([a], [b]) => a.localeCompare(b)));
  }

  /** Total requests made so far. */
  get requests(): number {
    let n = 0;
    for (const v of this.counts.values()) n += v;
    return n;
  }

  async close(): Promise<void> {
    await this.agent.close();
  }

  /** `GET /v2/`: the registry answers and accepts our credentials (or needs none). */
  async ping(): Promise<void> {
    const res = await this.send("GET", "/v2/", {});
    await this.expectOk(res, {});
    await res.body.dump();
  }

  /**
   * Every tag of a repository, sorted and without repeats. Follows `Link`
   * pages; copes with registries that ignore `n` (one big page), send no
   * `Link`, or return tags unsorted.
   */
  async listTags(repository: string, opts: { pageSize?: number } & CallOptions = {}): Promise<string[]> {
    checkRepository(repository);
    const pageSize = opts.pageSize ?? 1000;
    const scope = pullScope(repository);
    const tags = new Set<string>();
    let next: string | undefined = `/v2/${repository}/tags/list?n=${pageSize}`;
    for (let page = 0; next !== undefined; page++) {
      if (page >= this.maxTagPages) {
        throw this.error("protocol", `registry ${this.registry} kept sending tag pages for ${repository}: stopped after ${this.maxTagPages} pages (${tags.size} tags); check the registry, or name the image's tag so no listing is needed`);
      }
      const res = await this.send("GET", next, { scope, repository, headers: { accept: "application/json" }, signal: opts.signal });
      await this.expectOk(res, { repository });
      const body = (await this.json(res, BODY_LIMITS.json)) as { tags?: unknown };
      const pageTags = Array.isArray(body.tags) ? body.tags.filter((t): t is string => typeof t === "string") : [];
      const before = tags.size;
      for (const t of pageTags) tags.add(t);
      const link = nextLink(res.headers.link);
      if (link !== undefined) {
        // A registry that ignores `last` would send the same page forever.
        next = tags.size > before ? link : undefined;
      } else if (pageTags.length >= pageSize && tags.size > before) {
        // No Link but a full page: ask past the greatest tag seen, which also
        // works when the page came unsorted.
        next = `/v2/${repository}/tags/list?n=${pageSize}&last=${encodeURIComponent(maxString(pageTags))}`;
      } else {
        next = undefined;
      }
    }
    return [...tags].sort();
  }

  /** Whether the repository exists (one small tags request). */
  async repositoryExists(repository: string): Promise<boolean> {
    checkRepository(repository);
    const res = await this.send("GET", `/v2/${repository}/tags/list?n=1`, { scope: pullScope(repository), repository });
    if (res.status === 404) {
      await res.body.dump();
      return false;
    }
    await this.expectOk(res, { repository });
    await res.body.dump();
    return true;
  }

  /** `HEAD` a manifest: its digest and media type, or undefined when the tag does not exist. */
  async headManifest(repository: string, reference: string, opts: CallOptions = {}): Promise<ManifestDescriptor | undefined> {
    checkRepository(repository);
    checkReference(reference);
    const res = await this.send("HEAD", `/v2/${repository}/manifests/${reference}`, {
      scope: pullScope(repository), repository, headers: { accept: manifestAccept }, signal: opts.signal,
    });
    await res.body.dump();
    if (res.status === 404) return undefined;
    await this.expectOk(res, { repository });
    return {
      mediaType: first(res.headers["content-type"])?.split(";")[0]?.trim() ?? "",
      digest: first(res.headers["docker-content-digest"]) ?? "",
      size: Number(first(res.headers["content-length"]) ?? 0),
    };
  }

  /** `GET` a manifest (index or image), or undefined when it does not exist. */
  async getManifest(repository: string, reference: string, opts: CallOptions = {}): Promise<Manifest | undefined> {
    checkRepository(repository);
    checkReference(reference);
    const res = await this.send("GET", `/v2/${repository}/manifests/${reference}`, {
      scope: pullScope(repository), repository, headers: { accept: manifestAccept }, signal: opts.signal,
    });
    if (res.status === 404) {
      await res.body.dump();
      return undefined;
    }
    await this.expectOk(res, { repository });
    const raw = await this.readBody(res, BODY_LIMITS.manifest, `the manifest of ${repository}:${reference}`);
    let body: ManifestBody;
    try {
      body = JSON.parse(raw.toString("utf8")) as ManifestBody;
    } catch {
      throw this.error("protocol", `registry ${this.registry} sent a manifest for ${repository}:${reference} that is not JSON`);
    }
    const mediaType = manifestMediaType(first(res.headers["content-type"]), body);
    if (!isIndexMediaType(mediaType) && !isImageMediaType(mediaType)) {
      throw this.error("protocol", `${repository}:${reference} on ${this.registry} has manifest type ${mediaType}, which gpuop does not read (expected an OCI or Docker v2 image or index)`);
    }
    return {
      mediaType,
      digest: first(res.headers["docker-content-digest"]) ?? `sha256:${createHash("sha256").update(raw).digest("hex")}`,
      size: raw.length,
      body,
      isIndex: isIndexMediaType(mediaType),
    };
  }

  /**
   * The platforms an image runs on: an index's list, or a single image's
   * config (os/architecture). Undefined when the reference does not exist.
   */
  async platforms(repository: string, reference: string, opts: CallOptions = {}): Promise<Platform[] | undefined> {
    const manifest = await this.getManifest(repository, reference, opts);
    if (!manifest) return undefined;
    if (manifest.isIndex) return indexPlatforms(manifest.body);
    const config = manifest.body.config;
    if (!config?.digest) return [];
    const blob = JSON.parse((await this.getBlob(repository, config.digest, opts)).toString("utf8")) as { os?: string; architecture?: string; variant?: string };
    if (!blob.os || !blob.architecture) return [];
    const p: Platform = { os: blob.os, architecture: normalizeArch(blob.architecture) };
    if (blob.variant) p.variant = blob.variant;
    return [p];
  }

  /**
   * Whether `repository:tag` exists, and when `arch` is given, whether it has
   * an image for linux/<arch>. One HEAD without arch; with arch a GET (plus
   * the config blob for single-platform images).
   */
  async hasTag(repository: string, tag: string, arch?: string, opts: CallOptions = {}): Promise<boolean> {
    if (arch === undefined) return (await this.headManifest(repository, tag, opts)) !== undefined;
    const platforms = await this.platforms(repository, tag, opts);
    if (!platforms) return false;
    const want = normalizeArch(arch);
    return platforms.some((p) => p.os === "linux" && p.architecture === want);
  }

  /**
   * Which of `tags` exist in the repository. Many tags are answered from one
   * paged tag listing (a page answers up to 1000 tags at once); a few by one
   * HEAD each, `concurrency` at a time.
   */
  async tagsPresent(repository: string, tags: readonly string[], opts: { listThreshold?: number; concurrency?: number } = {}): Promise<Set<string>> {
    const unique = [...new Set(tags)];
    if (unique.length >= (opts.listThreshold ?? 64)) {
      const listed = new Set(await this.listTags(repository));
      return new Set(unique.filter((t) => listed.has(t)));
    }
    const present = await mapLimit(unique, opts.concurrency ?? 16, (t) => this.hasTag(repository, t));
    return new Set(unique.filter((_, i) => present[i]));
  }

  /** A blob's bytes (following the registry's redirect to storage, if any). */
  async getBlob(repository: string, digest: string, opts: CallOptions & { maxBytes?: number } = {}): Promise<Buffer> {
    checkRepository(repository);
    checkReference(digest);
    const res = await this.send("GET", `/v2/${repository}/blobs/${digest}`, { scope: pullScope(repository), repository, signal: opts.signal });
    await this.expectOk(res, { repository });
    return this.readBody(res, opts.maxBytes ?? BODY_LIMITS.blob, `blob ${digest} of ${repository}`);
  }

  /** Uploads a blob (POST then monolithic PUT) unless the registry has it; returns its digest. */
  async pushBlob(repository: string, data: Buffer): Promise<string> {
    checkRepository(repository);
    const digest = `sha256:${createHash("sha256").update(data).digest("hex")}`;
    const scope = pushScope(repository);
    const head = await this.send("HEAD", `/v2/${repository}/blobs/${digest}`, { scope, repository });
    await head.body.dump();
    if (head.status === 200) return digest;
    const start = await this.send("POST", `/v2/${repository}/blobs/uploads/`, { scope, repository, headers: { "content-length": "0" } });
    await this.expectOk(start, { repository });
    await start.body.dump();
    const location = first(start.headers.location);
    if (!location) throw this.error("protocol", `registry ${this.registry} started an upload to ${repository} without a Location header`);
    const url = new URL(location, this.base);
    url.searchParams.set("digest", digest);
    const put = await this.send("PUT", url.toString(), {
      scope, repository, body: data,
      headers: { "content-type": "application/octet-stream", "content-length": String(data.length) },
    });
    await this.expectOk(put, { repository });
    await put.body.dump();
    return digest;
  }

  /** Puts a manifest under a tag or digest; returns its digest. */
  async putManifest(repository: string, reference: string, manifest: Buffer | string, mediaType: string): Promise<string> {
    checkRepository(repository);
    checkReference(reference);
    const body = typeof manifest === "string" ? Buffer.from(manifest) : manifest;
    const res = await this.send("PUT", `/v2/${repository}/manifests/${reference}`, {
      scope: pushScope(repository), repository, body,
      headers: { "content-type": mediaType },
    });
    await this.expectOk(res, { repository });
    await res.body.dump();
    return first(res.headers["docker-content-digest"]) ?? `sha256:${createHash("sha256").update(body).digest("hex")}`;
  }

  // ---- transport ----

  /**
   * One logical request: authorises it (learning the scheme from the first
   * 401), follows redirects, and retries 429/5xx and dropped connections.
   */
  private async send(method: string, pathOrUrl: string, opts: SendOptions): Promise<Response> {
    let url = new URL(pathOrUrl, this.base).toString();
    const origin = new URL(this.base).origin;
    let authRetried = false;
    let redirects = 0;
    for (let retry = 0; ; ) {
      const headers: Record<string, string> = { "user-agent": "gpuop", ...opts.headers };
      const sameOrigin = new URL(url).origin === origin;
      const authorization = sameOrigin ? await this.authorization(opts.scope, opts.signal) : undefined;
      if (authorization) headers.authorization = authorization;
      let res: Response;
      try {
        res = await this.raw(method, url, headers, opts.body, opts.signal);
      } catch (err) {
        const e = this.networkError(err, url, undefined, opts.signal);
        // Only retry what may not have reached the server, or is safe to repeat.
        const retryable = (e.code === "timeout" || e.message.includes("reset")) && method !== "POST";
        if (retryable && retry < this.policy.retries) {
          await this.wait(backoffDelay(retry++, this.policy), opts.signal);
          continue;
        }
        throw e;
      }
      if (res.status >= 300 && res.status < 400 && res.headers.location && redirects < 5) {
        await res.body.dump();
        redirects++;
        url = new URL(first(res.headers.location)!, url).toString();
        continue;
      }
      if (res.status === 401 && sameOrigin && !authRetried) {
        const challenges = parseChallenges(first(res.headers["www-authenticate"]) ?? "");
        await res.body.dump();
        if (!this.learn(challenges, opts.scope, authorization !== undefined)) throw this.unauthorized(opts.repository, authorization !== undefined);
        authRetried = true;
        continue;
      }
      if (isRetryableStatus(res.status) && retry < this.policy.retries) {
        const after = parseRetryAfter(res.headers["retry-after"]);
        if (after !== undefined && after > this.policy.maxDelayMs) return res; // too long to wait: report it
        await res.body.dump();
        const wait = after ?? backoffDelay(retry, this.policy);
        this.log?.(`retrying ${method} ${redactUrl(url)} in ${wait} ms after HTTP ${res.status}`);
        retry++;
        await this.wait(wait, opts.signal);
        continue;
      }
      return res;
    }
  }

  private async raw(method: string, url: string, headers: Record<string, string>, body?: Buffer | string, signal?: AbortSignal): Promise<Response> {
    this.counts.set(method, (this.counts.get(method) ?? 0) + 1);
    const started = performance.now();
    const res = await request(url, {
      method,
      headers,
      body: body ?? null,
      agent: this.agent,
      headersTimeoutMs: this.timeoutMs,
      bodyTimeoutMs: this.timeoutMs,
      signal: signal ? AbortSignal.any([AbortSignal.timeout(this.timeoutMs), signal]) : AbortSignal.timeout(this.timeoutMs),
    });
    this.log?.(`${method} ${redactUrl(url)} -> ${res.statusCode} (${Math.round(performance.now() - started)} ms)`);
    return { status: res.statusCode, headers: res.headers, body: res.body, url };
  }

  /** Updates the auth scheme from a 401's challenges; false when retrying cannot help. */
  private learn(challenges: Challenge[], scope: string | undefined, sentAuthorization: boolean): boolean {
    const bearer = challenges.find((c) => c.scheme === "bearer" && c.params.realm);
    if (bearer) {
      const realm = this.checkRealm(bearer.params.realm!);
      this.auth = { scheme: "bearer", realm, service: bearer.params.service };
      // A token we sent was refused (expired or too narrow): fetch a new one,
      // for the scope the registry names if it names one.
      this.tokens.delete(scope ?? "");
      if (bearer.params.scope && scope !== undefined && bearer.params.scope !== scope) this.tokens.delete(bearer.params.scope);
      return true;
    }
    if (challenges.some((c) => c.scheme === "basic")) {
      this.auth = { scheme: "basic" };
      // Basic credentials already sent and refused will not do better a second time.
      return !sentAuthorization && this.credentials?.username !== undefined && this.credentials.password !== undefined;
    }
    return false;
  }

  /**
   * The token realm a registry names may be anywhere; credentials go there. Refused: a realm that
   * is not http(s), and plain http for a registry spoken to over https (the credentials would
   * cross the network in clear). A realm on another host is allowed (nvcr.io, Docker Hub and ECR
   * all do it) and logged, so the destination of the credentials can be audited.
   */
  private checkRealm(realm: string): string {
    let url: URL;
    try {
      url = new URL(realm);
    } catch {
      throw this.error("protocol", `registry ${this.registry} names a token service that is not a URL (${JSON.stringify(stripControl(realm.slice(0, 100)))}): check the registry address`);
    }
    if (url.protocol !== "https:" && url.protocol !== "http:") {
      throw this.error("protocol", `registry ${this.registry} names a token service with scheme ${url.protocol.slice(0, 20)}; only https is used: check the registry address`);
    }
    if (!this.plainHttp && url.protocol === "http:") {
      throw this.error("tls", `registry ${this.registry} is spoken to over https but names a token service over plain http (${url.host}); gpuop does not send credentials there: fix the registry's token realm, or list the registry as plain http if it is one`);
    }
    if (url.host !== new URL(this.base).host && !this.realmHosts.has(url.host)) {
      this.realmHosts.add(url.host);
      this.log?.(`token service of ${this.registry} is ${url.protocol}//${url.host}`);
      this.onRealm?.(url.host);
    }
    url.username = "";
    url.password = "";
    return url.toString();
  }

  private async authorization(scope: string | undefined, signal?: AbortSignal): Promise<string | undefined> {
    const auth = this.auth;
    if (!auth || auth.scheme === "none") return undefined;
    if (auth.scheme === "basic") {
      const c = this.credentials;
      return c?.username !== undefined && c.password !== undefined ? `Basic ${basicValue(c.username, c.password)}` : undefined;
    }
    const key = scope ?? "";
    const cached = this.tokens.get(key);
    if (cached && cached.expiresAt > Date.now()) return `Bearer ${cached.value}`;
    // Concurrent requests for one scope share one token request.
    let pending = this.pendingTokens.get(key);
    if (!pending) {
      pending = this.fetchToken(auth, scope, signal).finally(() => this.pendingTokens.delete(key));
      this.pendingTokens.set(key, pending);
    }
    const token = await pending;
    this.tokens.set(key, token);
    return `Bearer ${token.value}`;
  }

  /** The token flow of the distribution spec (GET with basic auth) or OAuth2 with a refresh token. */
  private async fetchToken(auth: BearerState, scope: string | undefined, signal?: AbortSignal): Promise<Token> {
    const realm = new URL(auth.realm);
    const c = this.credentials;
    let res: Response;
    for (let retry = 0; ; retry++) {
      try {
        if (c?.identityToken) {
          const form = new URLSearchParams({ grant_type: "refresh_token", refresh_token: c.identityToken, client_id: "gpuop" });
          if (auth.service) form.set("service", auth.service);
          if (scope) form.set("scope", scope);
          res = await this.raw("POST", realm.toString(), { "content-type": "application/x-www-form-urlencoded", "user-agent": "gpuop" }, form.toString(), signal);
        } else {
          const url = new URL(realm);
          if (auth.service) url.searchParams.set("service", auth.service);
          if (scope) url.searchParams.set("scope", scope);
          const headers: Record<string, string> = { "user-agent": "gpuop" };
          if (c?.username !== undefined && c.password !== undefined) headers.authorization = `Basic ${basicValue(c.username, c.password)}`;
          res = await this.raw("GET", url.toString(), headers, undefined, signal);
        }
      } catch (err) {
        throw this.networkError(err, realm.toString(), `the token service of ${this.registry}`, signal);
      }
      if (isRetryableStatus(res.status) && retry < this.policy.retries) {
        const after = parseRetryAfter(res.headers["retry-after"]);
        // As for the registry itself: a wait longer than the policy's cap is reported, not waited out.
        if (after !== undefined && after > this.policy.maxDelayMs) break;
        await res.body.dump();
        await this.wait(after ?? backoffDelay(retry, this.policy), signal);
        continue;
      }
      break;
    }
    if (res.status === 401 || res.status === 403) {
      await res.body.dump();
      throw this.unauthorized(undefined, c !== undefined, `its token service ${realm.host}`);
    }
    if (res.status === 429) {
      await res.body.dump();
      const after = parseRetryAfter(res.headers["retry-after"]);
      throw this.error("rate-limited", `the token service ${realm.host} of ${this.registry} is rate limiting requests (HTTP 429${after !== undefined ? `, retry after ${Math.ceil(after / 1000)} s` : ""}): wait and try again, or use credentials with a higher limit`, 429);
    }
    if (res.status !== 200) {
      await res.body.dump();
      throw this.error(res.status >= 500 ? "server" : "protocol", `the token service ${realm.host} of ${this.registry} answered HTTP ${res.status}: try again later, or check the registry address`, res.status);
    }
    const body = (await this.json(res, BODY_LIMITS.json)) as { token?: string; access_token?: string; expires_in?: number };
    const value = body.token ?? body.access_token;
    if (!value) throw this.error("protocol", `the token service ${realm.host} of ${this.registry} answered without a token`);
    this.secrets.add(value);
    // Renew a little early so a token does not expire in flight; the spec's default lifetime is 60 s.
    const lifetime = Math.max(10, body.expires_in ?? 60);
    return { value, expiresAt: Date.now() + (lifetime - Math.min(10, lifetime / 2)) * 1000 };
  }

  // ---- errors ----

  private async expectOk(res: Response, ctx: { repository?: string }): Promise<void> {
    if (res.status >= 200 && res.status < 300) return;
    const text = res.body ? await this.readBody(res, BODY_LIMITS.error, "an error").then((b) => b.toString("utf8"), () => "") : "";
    let codes: { code?: string; message?: string }[] = [];
    try {
      const parsed = JSON.parse(text) as { errors?: { code?: string; message?: string }[] };
      codes = Array.isArray(parsed.errors) ? parsed.errors : [];
    } catch { /* not JSON: the status alone decides */ }
    // Registry text goes into Events and terminals: no control characters.
    const detail = stripControl(codes.map((e) => [e.code, e.message].filter((x) => typeof x === "string" && x !== "").join(": ")).join("; ").slice(0, 200), { newlines: false });
    const said = detail ? ` (${detail})` : "";
    const repo = ctx.repository;
    if (res.status === 401) throw this.unauthorized(repo, this.credentials !== undefined);
    if (res.status === 403) {
      throw this.error("denied", this.credentials
        ? `registry ${this.registry} denied access to ${repo ?? "the request"} for the credentials in ${this.credentials.source}${said}: check that this account may pull it, or check the credentials in ${this.credentials.source}`
        : `registry ${this.registry} denied anonymous access to ${repo ?? "the request"}${said}: give credentials with --docker-config or --pull-secret`, 403);
    }
    if (res.status === 404 && repo !== undefined && (codes.length === 0 || codes.some((e) => e.code === "NAME_UNKNOWN"))) {
      throw this.error("not-found", `repository ${repo} does not exist on ${this.registry}: check the repository name (for NVIDIA's images: nvcr.io/nvidia/driver)`, 404);
    }
    if (res.status === 429) {
      const after = parseRetryAfter(res.headers["retry-after"]);
      throw this.error("rate-limited", `registry ${this.registry} is rate limiting requests (HTTP 429${after !== undefined ? `, retry after ${Math.ceil(after / 1000)} s` : ""}) after ${this.policy.retries + 1} attempts: wait and try again, or use credentials with a higher limit`, 429);
    }
    if (res.status >= 500) {
      throw this.error("server", `registry ${this.registry} failed with HTTP ${res.status}${said} after ${this.policy.retries + 1} attempts: try again later`, res.status);
    }
    if (res.status === 400 && this.plainHttp && /https/i.test(text)) {
      throw this.error("tls", `registry ${this.registry} serves https, not plain http: drop --plain-http`, 400);
    }
    throw this.error("protocol", `registry ${this.registry} answered HTTP ${res.status}${said} for ${redactUrl(res.url).replace(this.base, "")}`, res.status);
  }

  private unauthorized(repository: string | undefined, sentCredentials: boolean, via = ""): RegistryError {
    const where = via ? ` (${via})` : "";
    const what = repository ? ` to ${repository}` : "";
    if (this.credentials && sentCredentials) {
      return this.error("unauthorized", `registry ${this.registry}${where} rejected the credentials for access${what}: check the credentials in ${this.credentials.source}`, 401);
    }
    return this.error("unauthorized", `registry ${this.registry}${where} requires credentials for access${what}: log in (docker login ${this.registry}) and pass the config with --docker-config, or name a pull secret with --pull-secret`, 401);
  }

  private networkError(err: unknown, url: string, what = `registry ${this.registry}`, signal?: AbortSignal): RegistryError {
    if (err instanceof RegistryError) return err;
    if (signal?.aborted) return this.error("timeout", `${what} gave no answer before the check's deadline: ${String((signal.reason as Error | undefined)?.message ?? "aborted")}`);
    const e = err as NodeJS.ErrnoException & { cause?: NodeJS.ErrnoException };
    const code = e.code ?? e.cause?.code ?? "";
    const msg = `${e.message ?? ""} ${e.cause?.message ?? ""}`;
    const host = new URL(url).host;
    // Name the address only where it differs from the registry (a token service, Docker Hub's API host).
    const target = host === this.registry ? "" : ` at ${host}`;
    if (e.name === "TimeoutError" || e.name === "AbortError" || /TIMEOUT/.test(code)) {
      return this.error("timeout", `${what}${target} did not answer within ${this.timeoutMs / 1000} s: is the registry running and the address right?`);
    }
    if (/CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ALTNAME/.test(code) || /certificate/i.test(msg)) {
      return this.error("tls", `cannot verify the TLS certificate of ${what}${target} (${code || "certificate error"}): give its CA with --ca-file, or --insecure to skip verification`);
    }
    if (code === "EPROTO" || /wrong version number|ssl3_get_record|packet length too long/i.test(msg)) {
      return this.error("tls", `${what}${target} does not speak TLS: if it serves plain http, use --plain-http`);
    }
    const reason: Record<string, string> = {
      ECONNREFUSED: "connection refused", ENOTFOUND: "unknown host", EAI_AGAIN: "DNS lookup failed",
      ECONNRESET: "connection reset", EHOSTUNREACH: "host unreachable", ENETUNREACH: "network unreachable",
      // A connection closed in the middle of a response.
      ERR_STREAM_PREMATURE_CLOSE: "connection reset",
    };
    const why = reason[code] ?? (code || e.message || "network error");
    return this.error("unreachable", `cannot reach ${what}${target} (${why}): is the registry running and the address right?`);
  }

  /** Builds an error whose message has every known secret replaced. */
  private error(code: RegistryErrorCode, message: string, status?: number): RegistryError {
    return new RegistryError(code, this.registry, this.redact(message), status);
  }

  private redact(text: string): string {
    let out = text;
    for (const s of this.secrets) if (s.length >= 4) out = out.split(s).join("***");
    return out;
  }

  /** Waits, or throws when the call's deadline passes first. */
  private async wait(ms: number, signal?: AbortSignal): Promise<void> {
    try {
      await sleep(ms, undefined, signal ? { signal } : {});
    } catch (err) {
      throw this.networkError(err, this.base, undefined, signal);
    }
  }

  /** The response body, refused (and the connection dropped) past `limit` bytes. */
  private async readBody(res: Response, limit: number, what: string): Promise<Buffer> {
    const declared = Number(first(res.headers["content-length"]) ?? NaN);
    const tooLarge = () => this.error("protocol", `registry ${this.registry} sent ${what} larger than ${limit} bytes; gpuop reads no more: check the registry`);
    if (declared > limit) {
      res.body.destroy();
      throw tooLarge();
    }
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of res.body) {
      size += (chunk as Buffer).length;
      if (size > limit) {
        res.body.destroy();
        throw tooLarge();
      }
      chunks.push(chunk as Buffer);
    }
    return Buffer.concat(chunks);
  }

  private async json(res: Response, limit: number): Promise<unknown> {
    const text = (await this.readBody(res, limit, `a response to ${res.url.replace(this.base, "").split("?")[0]}`)).toString("utf8");
    try {
      return JSON.parse(text);
    } catch {
      throw this.error("protocol", `registry ${this.registry} answered ${res.url.replace(this.base, "")} with something that is not JSON`);
    }
  }
}

export function pullScope(repository: string): string {
  return `repository:${repository}:pull`;
}

export function pushScope(repository: string): string {
  return `repository:${repository}:pull,push`;
}

function basicValue(username: string, password: string): string {
  return Buffer.from(`${username}:${password}`).toString("base64");
}

function checkRepository(repository: string): void {
  if (!repositoryPattern.test(repository)) {
    throw new UserError(`"${repository}" is not a valid repository name: use lower-case path components like nvidia/driver`);
  }
}

function checkReference(reference: string): void {
  if (!tagPattern.test(reference) && !digestPattern.test(reference)) {
    throw new UserError(`"${reference}" is not a valid tag or digest: a tag is up to 128 letters, digits, '_', '.' and '-'`);
  }
}

function maxString(values: string[]): string {
  let max = values[0] ?? "";
  for (const v of values) if (v > max) max = v;
  return max;
}

/**
 * A URL for a log line: origin and path only. Queries can carry secrets gpuop never put there (a
 * storage backend's pre-signed blob URL, a realm's own parameters); so can user info.
 */
export function redactUrl(url: string): string {
  const u = new URL(url);
  return `${u.origin}${u.pathname}${u.search ? "?…" : ""}`;
}
