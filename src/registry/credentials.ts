import { existsSync, readFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { UserError } from "../core/errors.ts";

/**
 * Credentials for one registry, and where they came from. `source` is what
 * error messages name ("docker config /root/.docker/config.json", "pull
 * secret gpu-operator/ngc"), never the secret itself.
 */
export interface Credentials {
  username?: string;
  password?: string;
  /** A refresh token (`identitytoken` in config.json) for the OAuth2 token flow. */
  identityToken?: string;
  source: string;
}

/** The `auths` map of a docker config.json, or of a dockerconfigjson Secret. */
export interface DockerConfig {
  auths?: Record<string, { auth?: string; username?: string; password?: string; identitytoken?: string } | undefined>;
  credsStore?: string;
  credHelpers?: Record<string, string>;
}

const dockerHubAliases = new Set(["docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"]);

/**
 * The host a config.json key or image reference's registry names, in one
 * form: no scheme, no path, lower case, Docker Hub's many names as docker.io.
 * `https://index.docker.io/v1/` (what `docker login` writes) → `docker.io`.
 */
export function normalizeRegistryHost(key: string): string {
  let host = key.trim().toLowerCase();
  host = host.replace(/^[a-z][a-z0-9+.-]*:\/\//, "");
  host = host.split("/")[0] ?? "";
  return dockerHubAliases.has(host) ? "docker.io" : host;
}

/**
 * A set of credentials by registry host, read from one docker config; looked
 * up by any spelling of the host.
 */
export class CredentialStore {
  readonly source: string;
  private readonly byHost = new Map<string, Credentials>();
  private readonly helpers = new Map<string, string>();

  private constructor(source: string) {
    this.source = source;
  }

  /** From the parsed JSON of a docker config.json or a dockerconfigjson Secret's `.dockerconfigjson`. */
  static fromDockerConfig(config: unknown, source: string): CredentialStore {
    const store = new CredentialStore(source);
    if (config === null || typeof config !== "object" || Array.isArray(config)) {
      throw new UserError(`${source} is not a docker config (expected a JSON object with "auths")`);
    }
    const c = config as DockerConfig;
    for (const [key, entry] of Object.entries(c.auths ?? {})) {
      if (!entry || typeof entry !== "object") continue;
      const creds: Credentials = { source };
      if (typeof entry.auth === "string" && entry.auth !== "") {
        const decoded = Buffer.from(entry.auth, "base64").toString("utf8");
        const colon = decoded.indexOf(":");
        if (colon < 0) throw new UserError(`${source}: the "auth" entry for ${normalizeRegistryHost(key)} is not base64 of "username:password"; run 'docker login ${normalizeRegistryHost(key)}' again or fix the entry`);
        creds.username = decoded.slice(0, colon);
        creds.password = decoded.slice(colon + 1);
      }
      if (typeof entry.username === "string" && entry.username !== "") creds.username = entry.username;
      if (typeof entry.password === "string" && entry.password !== "") creds.password = entry.password;
      if (typeof entry.identitytoken === "string" && entry.identitytoken !== "") creds.identityToken = entry.identitytoken;
      if (creds.username === undefined && creds.password === undefined && creds.identityToken === undefined) continue;
      store.byHost.set(normalizeRegistryHost(key), creds);
    }
    for (const [host, helper] of Object.entries(c.credHelpers ?? {})) store.helpers.set(normalizeRegistryHost(host), helper);
    if (typeof c.credsStore === "string" && c.credsStore) store.helpers.set("*", c.credsStore);
    return store;
  }

  /** From a `.dockerconfigjson` Secret's decoded data, e.g. the one `driver.imagePullSecrets` names. */
  static fromPullSecret(dockerConfigJson: string, namespace: string, name: string): CredentialStore {
    const source = `pull secret ${namespace}/${name}`;
    let parsed: unknown;
    try {
      parsed = JSON.parse(dockerConfigJson);
    } catch {
      throw new UserError(`${source}: .dockerconfigjson is not JSON; recreate it with 'kubectl create secret docker-registry'`);
    }
    return CredentialStore.fromDockerConfig(parsed, source);
  }

  /** Reads a docker config.json file. */
  static fromFile(path: string): CredentialStore {
    const source = `docker config ${path}`;
    let text: string;
    try {
      text = readFileSync(path, "utf8");
    } catch (err) {
      throw new UserError(`cannot read ${source}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}; give an existing file with --docker-config`);
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      throw new UserError(`${source} is not valid JSON; fix it or give another file with --docker-config`);
    }
    return CredentialStore.fromDockerConfig(parsed, source);
  }

  /** Credentials for a registry host (any spelling), or undefined for anonymous access. */
  for(registry: string): Credentials | undefined {
    const host = normalizeRegistryHost(registry);
    const found = this.byHost.get(host);
    if (found) return found;
    const helper = this.helpers.get(host) ?? this.helpers.get("*");
    if (helper && this.helpers.has(host)) {
      throw new UserError(`${this.source} keeps the credentials for ${host} in the credential helper docker-credential-${helper}, which gpuop does not run; write them into a config.json "auths" entry (or a pull secret) and pass it with --docker-config`);
    }
    return undefined;
  }

  /** Hosts this store holds credentials for (normalised), for messages and tests. */
  hosts(): string[] {
    return [...this.byHost.keys()].sort();
  }
}

/**
 * Credentials for `registry` from a docker config.json: `explicit` when given
 * (it must exist), else $DOCKER_CONFIG/config.json or ~/.docker/config.json if present.
 */
export function dockerConfigCredentials(registry: string, explicit?: string): Credentials | undefined {
  const path = explicit ?? join(process.env.DOCKER_CONFIG ?? join(homedir(), ".docker"), "config.json");
  if (explicit === undefined && !existsSync(path)) return undefined;
  return CredentialStore.fromFile(path).for(registry);
}
