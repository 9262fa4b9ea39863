import { parseImageRef } from "../core/image.ts";
import type { KubeClient } from "../kube/client.ts";
import type { Logger } from "../kube/log.ts";
import type { Secret } from "../kube/types.ts";
import { RegistryClient } from "../registry/client.ts";
import { CredentialStore, normalizeRegistryHost, type Credentials } from "../registry/credentials.ts";
import { isObjectName, stripControl } from "../core/security.ts";

export type Availability = "present" | "missing" | "unknown";

export interface ImageAnswer {
  result: Availability;
  /** Why the registry could not tell ("unknown"), or which pull secret could not be used. */
  reason?: string;
  /**
   * Set while the registry has not answered yet (result "unknown"): the controller holds the
   * pool's nodes where they are, and is called back (onAnswer) when the answer arrives.
   */
  pending?: boolean;
  /** The digest the registry serves for the tag now ("present" only), so the pool can be pinned to it. */
  digest?: string;
}

export interface ImageCheckOptions {
  /** Registries (host:port) spoken to over plain http, e.g. a local mirror. */
  plainHttpRegistries?: string[];
  /** How long a missing image stays missing before the registry is asked again. */
  missingTtlMs?: number;
  /** How long a found image is trusted. */
  presentTtlMs?: number;
  /** The most one check (every request, retry and wait for one image) may take; default 60 s. */
  checkDeadlineMs?: number;
  /** Extra CA certificates (PEM) trusted for registries, e.g. a private registry's. */
  ca?: string;
}

/** Checks run at once, so that many pools do not open many connections to one registry. */
const CONCURRENT_CHECKS = 4;
/** Answers not asked for in this long are forgotten (the policy moved on to other images). */
const FORGET_AFTER_MS = 60 * 60_000;

interface CacheEntry {
  answer: ImageAnswer;
  /** Until when the answer is fresh; after it the last answer is still given while a new check runs. */
  until: number;
  askedAt: number;
}

/**
 * Asks registries whether a driver image exists for an architecture before
 * any node is moved onto it, so no node sits in ImagePullBackOff. The
 * reconcile never waits on a registry: it gets the last known answer at once,
 * and checks run in the background (a few at a time, each with a deadline),
 * calling onAnswer listeners when an answer changes. A registry that can't be
 * asked answers "unknown": the rollout then proceeds as NVIDIA's would, with a
 * warning, rather than blocking clusters whose operator has no route to the
 * registry.
 */
export class ImageChecker {
  private readonly cache = new Map<string, CacheEntry>();
  private readonly inFlight = new Map<string, Promise<void>>();
  private readonly queued: (() => void)[] = [];
  private running = 0;
  private readonly listeners: (() => void)[] = [];
  private readonly closing = new AbortController();
  private readonly tagCache = new Map<string, { answer: { tags: string[] } | { tags: undefined; reason: string }; until: number }>();
  private readonly clients = new Map<string, RegistryClient>();
  private readonly plainHttp: Set<string>;
  private readonly missingTtlMs: number;
  private readonly presentTtlMs: number;
  private readonly checkDeadlineMs: number;
  private readonly ca: string | undefined;
  private readonly kube: KubeClient;
  private readonly log: Logger;

  constructor(kube: KubeClient, log: Logger, opts: ImageCheckOptions = {}) {
    this.kube = kube;
    this.log = log;
    this.plainHttp = new Set((opts.plainHttpRegistries ?? []).map(normalizeRegistryHost));
    this.missingTtlMs = opts.missingTtlMs ?? 60_000;
    this.presentTtlMs = opts.presentTtlMs ?? 10 * 60_000;
    this.checkDeadlineMs = opts.checkDeadlineMs ?? 60_000;
    this.ca = opts.ca;
  }

  /** How long a found image's digest is trusted; the controller looks again after it, so a republished tag rolls. */
  get refreshMs(): number {
    return this.presentTtlMs;
  }

  /** The shortest time until a "missing" answer is asked again; the controller requeues after it. */
  get recheckMs(): number {
    return this.missingTtlMs;
  }

  /** Calls `listener` whenever a check ends with an answer other than the one given before. */
  onAnswer(listener: () => void): void {
    this.listeners.push(listener);
  }

  /** Credentials for a registry from the policy's pull secrets (in the operator's namespace). */
  private async credentials(registry: string, namespace: string, pullSecrets: readonly string[], problems: string[]): Promise<Credentials | undefined> {
    for (const name of pullSecrets) {
      // The policy is validated, but this is the last stop before an API path: a name like
      // "../../kube-system/secrets/x" must never become one.
      if (!isObjectName(name)) {
        problems.push(`pull secret name ${JSON.stringify(stripControl(name, { newlines: false }))} is not a Kubernetes object name`);
        continue;
      }
      let secret: Secret;
      try {
        secret = await this.kube.get<Secret>(`/api/v1/namespaces/${encodeURIComponent(namespace)}/secrets/${encodeURIComponent(name)}`);
      } catch (err) {
        problems.push(`cannot read pull secret ${namespace}/${name} (${(err as { status?: number }).status === 404 ? "it does not exist" : (err as Error).message})`);
        continue;
      }
      const data = secret.data?.[".dockerconfigjson"];
      if (!data) {
        problems.push(`pull secret ${namespace}/${name} has no .dockerconfigjson`);
        continue;
      }
      try {
        const creds = CredentialStore.fromPullSecret(Buffer.from(data, "base64").toString("utf8"), namespace, name).for(registry);
        if (creds) return creds;
      } catch (err) {
        problems.push((err as Error).message);
      }
    }
    return undefined;
  }

  private async clientFor(registry: string, namespace: string, pullSecrets: readonly string[], problems: string[]): Promise<RegistryClient> {
    const creds = await this.credentials(registry, namespace, pullSecrets, problems);
    const key = `${normalizeRegistryHost(registry)}|${creds?.source ?? ""}|${creds?.username ?? ""}`;
    let client = this.clients.get(key);
    if (!client) {
      client = new RegistryClient({
        registry,
        plainHttp: this.plainHttp.has(normalizeRegistryHost(registry)),
        timeoutMs: 10_000,
        retry: { retries: 2 },
        ...(creds ? { credentials: creds } : {}),
        ...(this.ca ? { ca: this.ca } : {}),
        onRealm: (host) => this.log.info("registry sends credentials to a token service on another host", { registry, tokenService: host }),
      });
      this.clients.set(key, client);
    }
    return client;
  }

  /**
   * The last known answer to whether `image` has a linux image for every one of `arches`,
   * without waiting on the registry: when the answer is stale or there is none, a check starts
   * in the background, and until a first answer arrives the result is "unknown" with `pending`.
   */
  async availability(image: string, arches: readonly string[], namespace: string, pullSecrets: readonly string[]): Promise<ImageAnswer> {
    const key = `${image}|${[...arches].sort().join(",")}|${pullSecrets.join(",")}`;
    const now = Date.now();
    const entry = this.cache.get(key);
    if (entry) entry.askedAt = now;
    if (!entry || entry.until <= now) this.refresh(key, () => this.check(image, arches, namespace, pullSecrets));
    this.forgetOld(now);
    return entry ? { ...entry.answer } : { result: "unknown", pending: true, reason: "the registry has not answered yet" };
  }

  /** Resolves once no check is running or queued (tests, shutdown). */
  async idle(): Promise<void> {
    while (this.inFlight.size > 0) await Promise.allSettled([...this.inFlight.values()]);
  }

  private refresh(key: string, check: () => Promise<ImageAnswer>): void {
    if (this.inFlight.has(key) || this.closing.signal.aborted) return;
    const run = async () => {
      await this.slot();
      try {
        const answer = await check();
        const before = this.cache.get(key);
        const ttl = answer.result === "present" ? this.presentTtlMs : answer.result === "missing" ? this.missingTtlMs : Math.min(this.missingTtlMs, 30_000);
        this.cache.set(key, { answer, until: Date.now() + ttl, askedAt: before?.askedAt ?? Date.now() });
        if (!before || before.answer.result !== answer.result || before.answer.reason !== answer.reason || before.answer.digest !== answer.digest) {
          for (const l of this.listeners) l();
        }
      } finally {
        this.release();
      }
    };
    const p = run()
      .catch((err: unknown) => this.log.error("driver image check failed", { error: (err as Error).message }))
      .finally(() => this.inFlight.delete(key));
    this.inFlight.set(key, p);
  }

  private async slot(): Promise<void> {
    if (this.running < CONCURRENT_CHECKS) {
      this.running++;
      return;
    }
    await new Promise<void>((resolve) => this.queued.push(resolve));
  }

  private release(): void {
    const next = this.queued.shift();
    if (next) next();
    else this.running--;
  }

  private forgetOld(now: number): void {
    for (const [key, entry] of this.cache) {
      if (now - entry.askedAt > FORGET_AFTER_MS && !this.inFlight.has(key)) this.cache.delete(key);
    }
  }

  /** Asks the registry now, within the check's deadline. */
  async check(image: string, arches: readonly string[], namespace: string, pullSecrets: readonly string[]): Promise<ImageAnswer> {
    const ref = parseImageRef(image);
    let result: Availability;
    let reason: string | undefined;
    let digest: string | undefined;
    const problems: string[] = [];
    const deadline = AbortSignal.any([AbortSignal.timeout(this.checkDeadlineMs), this.closing.signal]);
    try {
      const client = await this.clientFor(ref.registry, namespace, pullSecrets, problems);
      const tag = ref.tag ?? ref.digest ?? "latest";
      // One HEAD answers whether the tag exists and which digest it names; per-architecture checks follow.
      const head = await client.headManifest(ref.repository, tag, { signal: deadline });
      const found = head === undefined ? [false] : arches.length ? await Promise.all(arches.map((a) => client.hasTag(ref.repository, tag, a, { signal: deadline }))) : [true];
      result = found.every(Boolean) ? "present" : "missing";
      // The tag's own digest (an index's, for multi-arch images) is what a node's runtime records as the pod's imageID.
      if (result === "present" && ref.tag !== undefined && ref.digest === undefined && head && /^sha256:[0-9a-f]{64}$/.test(head.digest)) digest = head.digest;
    } catch (err) {
      // A missing repository is a missing image; anything else means we could not tell.
      if ((err as { code?: string }).code === "not-found") result = "missing";
      else {
        const message = deadline.aborted && !this.closing.signal.aborted ? `the registry check did not finish within ${this.checkDeadlineMs / 1000} s` : (err as Error).message;
        reason = stripControl([message, ...problems].join("; "), { newlines: false });
        this.log.warn("cannot check driver image; rolling out without the check", { image, reason });
        result = "unknown";
      }
    }
    return { result, ...(reason ? { reason } : {}), ...(digest && result === "present" ? { digest } : {}) };
  }

  /**
   * The tags of an image repository (`registry/path/name`), cached as long as a missing image;
   * without tags, why they could not be listed. The conventional fallback picks its version here.
   */
  async tags(repository: string, namespace: string, pullSecrets: readonly string[]): Promise<{ tags: string[] } | { tags: undefined; reason: string }> {
    const key = `${repository}|${pullSecrets.join(",")}`;
    const cached = this.tagCache.get(key);
    if (cached && cached.until > Date.now()) return cached.answer;
    const ref = parseImageRef(repository);
    const problems: string[] = [];
    let answer: { tags: string[] } | { tags: undefined; reason: string };
    try {
      const client = await this.clientFor(ref.registry, namespace, pullSecrets, problems);
      answer = { tags: await client.listTags(ref.repository) };
    } catch (err) {
      if ((err as { code?: string }).code === "not-found") answer = { tags: [] };
      else {
        answer = { tags: undefined, reason: [(err as Error).message, ...problems].join("; ") };
        this.log.warn("cannot list driver image tags", { repository, reason: answer.reason });
      }
    }
    this.tagCache.set(key, { answer, until: Date.now() + (answer.tags ? this.missingTtlMs : Math.min(this.missingTtlMs, 30_000)) });
    return answer;
  }

  async close(): Promise<void> {
    this.closing.abort(new Error("the operator is stopping"));
    await this.idle();
    await Promise.all([...this.clients.values()].map((c) => c.close()));
  }
}
