import { readFileSync, existsSync } from "node:fs";
import { homedir } from "node:os";
import { dirname, isAbsolute, join } from "node:path";
import { parse as parseYaml } from "yaml";
import { UserError } from "../core/errors.ts";

/** Where and how to reach one API server, resolved from a kubeconfig or the pod's service account. */
export interface ClusterAccess {
  server: string;
  ca?: Buffer;
  insecureSkipTLSVerify?: boolean;
  clientCert?: Buffer;
  clientKey?: Buffer;
  token?: string;
  /** Re-read on use: projected service-account tokens rotate. */
  tokenFile?: string;
  username?: string;
  password?: string;
  /** Where this came from, for error messages. */
  source: string;
}

const SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount";

interface RawKubeconfig {
  "current-context"?: string;
  clusters?: { name: string; cluster: Record<string, string | boolean> }[];
  users?: { name: string; user: Record<string, unknown> }[];
  contexts?: { name: string; context: { cluster: string; user: string; namespace?: string } }[];
}

/**
 * Resolves cluster access: an explicit kubeconfig path, then $KUBECONFIG,
 * then in-cluster service account, then ~/.kube/config.
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

export function fromKubeconfig(path: string, contextName?: string): ClusterAccess {
  let raw: RawKubeconfig;
  try {
    raw = parseYaml(readFileSync(path, "utf8")) as RawKubeconfig;
  } catch (err) {
    throw new UserError(`cannot read kubeconfig ${path}: ${(err as Error).message}`);
  }
  const base = dirname(path);
  const ctxName = contextName ?? raw["current-context"];
  const ctx = raw.contexts?.find((c) => c.name === ctxName)?.context;
  if (!ctx) throw new UserError(`kubeconfig ${path} has no context "${ctxName ?? ""}": set current-context or pass --context`);
  const cluster = raw.clusters?.find((c) => c.name === ctx.cluster)?.cluster;
  if (!cluster || typeof cluster.server !== "string") throw new UserError(`kubeconfig ${path}: cluster "${ctx.cluster}" has no server`);
  const user = (raw.users?.find((u) => u.name === ctx.user)?.user ?? {}) as Record<string, string | undefined>;
  if (user.exec || user["auth-provider"]) {
    throw new UserError(`kubeconfig ${path}: user "${ctx.user}" uses an exec or auth-provider plugin, which gpuop does not run; use a token or client certificate`);
  }
  const file = (p: string) => readFileSync(isAbsolute(p) ? p : join(base, p));
  const data = (inline: unknown, ref: unknown) =>
    typeof inline === "string" ? Buffer.from(inline, "base64") : typeof ref === "string" ? file(ref) : undefined;
  const access: ClusterAccess = { server: cluster.server.replace(/\/+$/, ""), source: `kubeconfig ${path}` };
  const ca = data(cluster["certificate-authority-data"], cluster["certificate-authority"]);
  if (ca) access.ca = ca;
  if (cluster["insecure-skip-tls-verify"] === true) access.insecureSkipTLSVerify = true;
  const cert = data(user["client-certificate-data"], user["client-certificate"]);
  const key = data(user["client-key-data"], user["client-key"]);
  if (cert) access.clientCert = cert;
  if (key) access.clientKey = key;
  if (user.token) access.token = user.token;
  if (user.tokenFile) access.tokenFile = isAbsolute(user.tokenFile) ? user.tokenFile : join(base, user.tokenFile);
  if (user.username) access.username = user.username;
  if (user.password) access.password = user.password;
  return access;
}
