import { readFileSync, existsSync } from "node:fs";
import { homedir } from "node:os";
import { dirname, isAbsolute, join } from "node:path";
import { parse as parseYaml } from "yaml";
import { UserError } from "../core/errors.ts";
import { checkExecConfig, ExecPlugin, type CredentialSource, type ExecClusterInfo } from "./exec-credential.ts";

/** Where and how to reach one API server, resolved from a kubeconfig or the pod's service account. */
export interface ClusterAccess {
  server: string;
  ca?: Buffer;
  insecureSkipTLSVerify?: boolean;
  /** The name the server's certificate is checked against, when not the server's host. */
  tlsServerName?: string;
  clientCert?: Buffer;
  clientKey?: Buffer;
  token?: string;
  /** Re-read on use: projected service-account tokens rotate. */
  tokenFile?: string;
  username?: string;
  password?: string;
  /** An exec plugin or auth-provider: asked for a credential per request, and again after a 401. */
  credentials?: CredentialSource;
  /** Where this came from, for error messages. */
  source: string;
}

const SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount";

/** Set to 1 to send credentials to an http:// API server (a test rig on loopback, say). */
export const ALLOW_HTTP_CREDENTIALS_ENV = "GPUOP_ALLOW_HTTP_CREDENTIALS";

/**
 * Resolves cluster access: an explicit kubeconfig path, then the first existing file of
 * $KUBECONFIG, then the in-cluster service account, then ~/.kube/config.
 */
export function resolveClusterAccess(opts: { kubeconfig?: string; context?: string } = {}): ClusterAccess {
  const explicit = opts.kubeconfig ?? process.env.KUBECONFIG?.split(":").find((p) => p && existsSync(p));
  if (explicit) return fromKubeconfig(explicit, opts.context);
  if (process.env.KUBERNETES_SERVICE_HOST && existsSync(join(SA_DIR, "token"))) return inCluster();
  const home = join(homedir(), ".kube", "config");
  if (existsSync(home)) return fromKubeconfig(home, opts.context);
  throw new UserError("no Kubernetes cluster configured: pass --kubeconfig <file>, set KUBECONFIG, or run inside a pod");
}

function inCluster(): ClusterAccess {
  const host = process.env.KUBERNETES_SERVICE_HOST ?? "";
  const port = process.env.KUBERNETES_SERVICE_PORT ?? "443";
  return {
    server: `https://${host.includes(":") ? `[${host}]` : host}:${port}`,
    ca: readFileSync(join(SA_DIR, "ca.crt")),
    tokenFile: join(SA_DIR, "token"),
    source: "in-cluster service account",
  };
}

type Raw = Record<string, unknown>;
const isMap = (v: unknown): v is Raw => typeof v === "object" && v !== null && !Array.isArray(v);

/** Checks the shape kubeconfigs have, so a broken file gets a message, not a TypeError. */
function checkShape(raw: unknown, path: string): Raw {
  if (!isMap(raw)) throw new UserError(`kubeconfig ${path} is not a kubeconfig: expected a mapping with clusters, contexts, users and current-context`);
  for (const [list, inner] of [["clusters", "cluster"], ["contexts", "context"], ["users", "user"]] as const) {
    const v = raw[list];
    if (v === undefined || v === null) continue;
    if (!Array.isArray(v)) throw new UserError(`kubeconfig ${path}: ${list} must be a list`);
    v.forEach((e: unknown, i) => {
      if (!isMap(e) || typeof e["name"] !== "string") throw new UserError(`kubeconfig ${path}: ${list}[${i}] needs a name`);
      if (e[inner] !== undefined && e[inner] !== null && !isMap(e[inner])) throw new UserError(`kubeconfig ${path}: ${list}[${i}].${inner} must be a mapping`);
    });
  }
  for (const [i, c] of ((raw["clusters"] ?? []) as Raw[]).entries()) {
    const server = (c["cluster"] as Raw | undefined)?.["server"];
    if (typeof server !== "string" || server === "") throw new UserError(`kubeconfig ${path}: clusters[${i}] ("${String(c["name"])}") has no server URL`);
  }
  return raw;
}

export function fromKubeconfig(path: string, contextName?: string): ClusterAccess {
  let text: string;
  let raw: Raw;
  try {
    text = readFileSync(path, "utf8");
    raw = checkShape(parseYaml(text), path);
  } catch (err) {
    if (err instanceof UserError) throw err;
    throw new UserError(`cannot read kubeconfig ${path}: ${(err as Error).message}`);
  }
  const base = dirname(path);
  const currentContext = raw["current-context"];
  const ctxName = contextName ?? (typeof currentContext === "string" && currentContext !== "" ? currentContext : undefined);
  const ctxEntry = ctxName !== undefined ? named(raw, "contexts", ctxName) : undefined;
  if (ctxName === undefined || !ctxEntry) throw new UserError(`kubeconfig ${path} has no context "${ctxName ?? ""}": set current-context or pass --context`);
  const ctx = (ctxEntry["context"] ?? {}) as Raw;
  const clusterName = String(ctx["cluster"] ?? "");
  const userName = String(ctx["user"] ?? "");
  const rawCluster = named(raw, "clusters", clusterName)?.["cluster"] as Raw | undefined;
  if (!rawCluster) throw new UserError(`kubeconfig ${path}: context "${ctxName}" names cluster "${clusterName}", which is not in the file`);
  const rawUser = (named(raw, "users", userName)?.["user"] ?? {}) as Raw;
  const cluster = {
    server: String(rawCluster["server"]),
    caData: rawCluster["certificate-authority-data"],
    caFile: rawCluster["certificate-authority"],
    skipTLSVerify: rawCluster["insecure-skip-tls-verify"] === true,
    tlsServerName: stringOr(rawCluster["tls-server-name"]),
    proxyUrl: stringOr(rawCluster["proxy-url"]),
  };
  const user = { certData: rawUser["client-certificate-data"], certFile: rawUser["client-certificate"], keyData: rawUser["client-key-data"], keyFile: rawUser["client-key"], username: rawUser["username"], password: rawUser["password"] };

  const file = (p: string) => readFileSync(isAbsolute(p) ? p : join(base, p));
  const data = (inline: unknown, ref: unknown) =>
    typeof inline === "string" && inline !== "" ? Buffer.from(inline, "base64") : typeof ref === "string" && ref !== "" ? file(ref) : undefined;
  const access: ClusterAccess = { server: cluster.server.replace(/\/+$/, ""), source: `kubeconfig ${path}` };
  try {
    const ca = data(cluster.caData, cluster.caFile);
    if (ca) access.ca = ca;
    const cert = data(user.certData, user.certFile);
    const key = data(user.keyData, user.keyFile);
    if (cert) access.clientCert = cert;
    if (key) access.clientKey = key;
  } catch (err) {
    throw new UserError(`kubeconfig ${path}: cannot read a certificate or key file: ${(err as Error).message}`);
  }
  if (cluster.skipTLSVerify) access.insecureSkipTLSVerify = true;
  if (cluster.tlsServerName) access.tlsServerName = cluster.tlsServerName;
  if (typeof rawUser["token"] === "string" && rawUser["token"] !== "") access.token = rawUser["token"];
  const tokenFile = rawUser["tokenFile"] ?? rawUser["token-file"];
  if (typeof tokenFile === "string" && tokenFile !== "") access.tokenFile = isAbsolute(tokenFile) ? tokenFile : join(base, tokenFile);
  if (typeof user.username === "string") access.username = user.username;
  if (typeof user.password === "string") access.password = user.password;

  const where = `kubeconfig ${path}: users "${userName}"`;
  if (rawUser["exec"] !== undefined && rawUser["exec"] !== null) {
    const exec = checkExecConfig(rawUser["exec"], where);
    const info: ExecClusterInfo = { server: access.server };
    if (cluster.tlsServerName) info["tls-server-name"] = cluster.tlsServerName;
    if (cluster.skipTLSVerify) info["insecure-skip-tls-verify"] = true;
    if (access.ca) info["certificate-authority-data"] = access.ca.toString("base64");
    if (cluster.proxyUrl) info["proxy-url"] = cluster.proxyUrl;
    // Per-cluster plugin settings live in this extension, as kubectl passes them.
    const ext = (rawCluster["extensions"] as { name?: string; extension?: unknown }[] | undefined)?.find?.((e) => e.name === "client.authentication.k8s.io/exec");
    if (ext) info.config = ext.extension;
    access.credentials = new ExecPlugin({ exec, user: userName, baseDir: base, cluster: info });
  } else if (isMap(rawUser["auth-provider"])) {
    access.credentials = authProvider(text, ctxName, userName, where);
  }
  refuseCredentialsOverHttp(access);
  return access;
}

/** The first entry of a kubeconfig list with this name (as kubectl and client-node take it). */
function named(raw: Raw, list: "clusters" | "contexts" | "users", name: string): Raw | undefined {
  return ((raw[list] ?? []) as Raw[]).find((e) => e["name"] === name);
}

const stringOr = (v: unknown) => (typeof v === "string" && v !== "" ? v : undefined);

/**
 * auth-provider entries (oidc, and the older azure and gcp ones, which shell out to a command)
 * go to @kubernetes/client-node, which refreshes them by their expiry. It is loaded only for
 * them: the library with its generated API is about 30 MiB of heap, more than all of a
 * 3,000-node cluster's cached objects.
 */
function authProvider(text: string, context: string, user: string, where: string): CredentialSource {
  let kc: import("@kubernetes/client-node").KubeConfig | undefined;
  return {
    async get() {
      const opts: { headers?: Record<string, string>; cert?: Buffer | string; key?: Buffer | string } = {};
      try {
        if (!kc) {
          const { KubeConfig } = await import("@kubernetes/client-node");
          kc = new KubeConfig();
          kc.loadFromString(text);
          kc.setCurrentContext(context);
        }
        await kc.applyToHTTPSOptions(opts as Parameters<import("@kubernetes/client-node").KubeConfig["applyToHTTPSOptions"]>[0]);
      } catch (err) {
        throw new UserError(`${where}: its auth-provider gave no credential: ${(err as Error).message}`);
      }
      const auth = opts.headers?.["Authorization"] ?? opts.headers?.["authorization"];
      if (!auth?.startsWith("Bearer ")) throw new UserError(`${where}: its auth-provider gave no bearer token (user "${user}")`);
      return { token: auth.slice("Bearer ".length) };
    },
    invalidate() {
      // client-node keeps the provider's token until its expiry; nothing to drop here.
    },
  };
}

/** Tokens and passwords over plain http can be read by anyone on the path: refuse unless asked for. */
function refuseCredentialsOverHttp(a: ClusterAccess): void {
  if (!a.server.startsWith("http://")) return;
  if (!(a.token || a.tokenFile || a.username !== undefined || a.credentials)) return;
  if (process.env[ALLOW_HTTP_CREDENTIALS_ENV] === "1") return;
  throw new UserError(
    `${a.source}: the API server ${a.server} is plain http, and the user has a token, password or credential plugin that would be sent unencrypted; use the https:// address, or set ${ALLOW_HTTP_CREDENTIALS_ENV}=1 if this is a trusted loopback test server`,
  );
}
