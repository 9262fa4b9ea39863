import { parseImageRef } from "../core/image.ts";
import type { KubeClient } from "../kube/client.ts";
import type { Logger } from "../kube/log.ts";
import type { Secret } from "../kube/types.ts";
import { RegistryClient } from "../registry/client.ts";
import { CredentialStore, normalizeRegistryHost, type Credentials } from "../registry/credentials.ts";

export type Availability = "present" | "missing" | "unknown";

export interface ImageAnswer {
  result: Availability;
  /** Why the registry could not tell ("unknown"), or which pull secret could not be used. */
  reason?: string;
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
}

/**
 * Asks registries whether a driver image exists for an architecture before
 * any node is moved onto it, so no node sits in ImagePullBackOff. Answers are
 * cached, so a steady state sends no registry requests. A registry that can't
 * be asked answers "unknown": the rollout then proceeds as NVIDIA's would,
 * with a warning, rather than blocking clusters whose operator has no route
 * to the registry.
 */
export class ImageChecker {
  private readonly cache = new Map<string, ImageAnswer & { until: number }>();
  private readonly clients = new Map<string, RegistryClient>();
  private readonly plainHttp: Set<string>;
  private readonly missingTtlMs: number;
  private readonly presentTtlMs: number;
  private readonly kube: KubeClient;
  private readonly log: Logger;

  constructor(kube: KubeClient, log: Logger, opts: ImageCheckOptions = {}) {
    this.kube = kube;
    this.log = log;
    this.plainHttp = new Set((opts.plainHttpRegistries ?? []).map(normalizeRegistryHost));
    this.missingTtlMs = opts.missingTtlMs ?? 60_000;
    this.presentTtlMs = opts.presentTtlMs ?? 10 * 60_000;
  }

  /** How long a found image's digest is trusted; the controller looks again after it, so a republished tag rolls. */
  get refreshMs(): number {
    return this.presentTtlMs;
  }

  /** The shortest time until a "missing" answer is asked again; the controller requeues after it. */
  get recheckMs(): number {
    return this.missingTtlMs;
  }

  /** Credentials for a registry from the policy's pull secrets (in the operator's namespace). */
  private async credentials(registry: string, namespace: string, pullSecrets: readonly string[], problems: string[]): Promise<Credentials | undefined> {
    for (const name of pullSecrets) {
      let secret: Secret;
      try {
        secret = await this.kube.get<Secret>(`/api/v1/namespaces/${namespace}/secrets/${name}`);
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
      });
      this.clients.set(key, client);
    }
    return client;
  }

  /** Whether `image` has a linux image for every one of `arches`. */
  async availability(image: string, arches: readonly string[], namespace: string, pullSecrets: readonly string[]): Promise<ImageAnswer> {
    const key = `${image}|${[...arches].sort().join(",")}|${pullSecrets.join(",")}`;
    const cached = this.cache.get(key);
    if (cached && cached.until > Date.now()) return cached;
    const ref = parseImageRef(image);
    let result: Availability;
    let reason: string | undefined;
    let digest: string | undefined;
    const problems: string[] = [];
    try {
      const client = await this.clientFor(ref.registry, namespace, pullSecrets, problems);
      const tag = ref.tag ?? ref.digest ?? "latest";
      const found = await Promise.all((arches.length ? arches : [undefined]).map((a) => client.hasTag(ref.repository, tag, a)));
      result = found.every(Boolean) ? "present" : "missing";
      // The tag's own digest (an index's, for multi-arch images) is what a node's runtime records as the pod's imageID.
      if (result === "present" && ref.tag !== undefined && ref.digest === undefined) {
        const head = await client.headManifest(ref.repository, ref.tag);
        if (head && /^sha256:[0-9a-f]{64}$/.test(head.digest)) digest = head.digest;
      }
    } catch (err) {
      // A missing repository is a missing image; anything else means we could not tell.
      if ((err as { code?: string }).code === "not-found") result = "missing";
      else {
        reason = [(err as Error).message, ...problems].join("; ");
        this.log.warn("cannot check driver image; rolling out without the check", { image, reason });
        result = "unknown";
      }
    }
    const ttl = result === "present" ? this.presentTtlMs : result === "missing" ? this.missingTtlMs : Math.min(this.missingTtlMs, 30_000);
    const answer: ImageAnswer = { result, ...(reason ? { reason } : {}), ...(digest && result === "present" ? { digest } : {}) };
    this.cache.set(key, { ...answer, until: Date.now() + ttl });
    return answer;
  }

  async close(): Promise<void> {
    await Promise.all([...this.clients.values()].map((c) => c.close()));
  }
}
