import { spawn } from "node:child_process";
import { isAbsolute, join } from "node:path";
import { UserError } from "../core/errors.ts";

/**
 * The client.authentication.k8s.io exec credential protocol, as kubectl runs it: the plugin gets
 * KUBERNETES_EXEC_INFO (and the cluster, with provideClusterInfo), prints an ExecCredential, and
 * its token is reused until its expirationTimestamp or until the API server answers 401.
 *
 * @kubernetes/client-node's ExecAuth sets no KUBERNETES_EXEC_INFO, ignores interactiveMode and
 * provideClusterInfo, and cannot be told to drop a token the server rejected, so gpuop runs the
 * plugin itself (docs/adr/0003-kubeconfig-with-client-node.md).
 */

export const EXEC_API_VERSIONS = ["client.authentication.k8s.io/v1", "client.authentication.k8s.io/v1beta1"] as const;

export interface ExecConfig {
  apiVersion?: string;
  command?: string;
  args?: string[];
  env?: { name: string; value: string }[] | null;
  interactiveMode?: string;
  provideClusterInfo?: boolean;
  installHint?: string;
}

/** What the plugin sees of the cluster with provideClusterInfo (the ExecCredential's spec.cluster). */
export interface ExecClusterInfo {
  server: string;
  "tls-server-name"?: string;
  "insecure-skip-tls-verify"?: boolean;
  "certificate-authority-data"?: string;
  "proxy-url"?: string;
  config?: unknown;
}

export interface Credential {
  token?: string;
  clientCert?: Buffer;
  clientKey?: Buffer;
  /** Milliseconds since the epoch; absent: valid until the server rejects it. */
  expiresAt?: number;
}

/** A credential that may be fetched again: before expiry passes, and after a 401. */
export interface CredentialSource {
  get(): Promise<Credential>;
  /**
   * The server rejected the credential: the next get() asks the plugin again. Given the rejected
   * credential, a newer one (fetched by a concurrent request meanwhile) is kept.
   */
  invalidate(rejected?: Credential): void;
}

export interface ExecPluginOptions {
  exec: ExecConfig;
  /** User name in the kubeconfig, for messages. */
  user: string;
  /** The kubeconfig's folder: a relative command path with a slash is taken from there, as kubectl does. */
  baseDir: string;
  cluster: ExecClusterInfo;
  /** Whether a person can answer the plugin (stdin is a terminal). */
  stdinIsTerminal?: boolean;
  now?: () => number;
}

const INTERACTIVE_MODES = ["Never", "IfAvailable", "Always"];

/** Checks an exec entry before any request, so a bad kubeconfig fails with its own message. */
export function checkExecConfig(exec: unknown, where: string): ExecConfig {
  if (typeof exec !== "object" || exec === null || Array.isArray(exec)) throw new UserError(`${where}.exec must be a mapping`);
  const e = exec as Record<string, unknown>;
  if (typeof e["command"] !== "string" || e["command"] === "") throw new UserError(`${where}.exec.command is missing: name the credential plugin to run`);
  if (!EXEC_API_VERSIONS.includes(e["apiVersion"] as (typeof EXEC_API_VERSIONS)[number])) {
    throw new UserError(`${where}.exec.apiVersion is ${JSON.stringify(e["apiVersion"] ?? null)}: use ${EXEC_API_VERSIONS.join(" or ")} (v1alpha1 is no longer served by kubectl either)`);
  }
  if (e["args"] !== undefined && e["args"] !== null && !(Array.isArray(e["args"]) && e["args"].every((a) => typeof a === "string"))) {
    throw new UserError(`${where}.exec.args must be a list of strings`);
  }
  const env = e["env"];
  if (env !== undefined && env !== null && !(Array.isArray(env) && env.every((v) => typeof v === "object" && v !== null && typeof (v as { name?: unknown }).name === "string" && typeof (v as { value?: unknown }).value === "string"))) {
    throw new UserError(`${where}.exec.env must be a list of {name, value} with string values`);
  }
  const mode = e["interactiveMode"];
  if (mode === undefined && e["apiVersion"] === "client.authentication.k8s.io/v1") {
    throw new UserError(`${where}.exec.interactiveMode is required with client.authentication.k8s.io/v1: set Never, IfAvailable or Always`);
  }
  if (mode !== undefined && !INTERACTIVE_MODES.includes(mode as string)) {
    throw new UserError(`${where}.exec.interactiveMode is ${JSON.stringify(mode)}: use Never, IfAvailable or Always`);
  }
  if (e["provideClusterInfo"] !== undefined && typeof e["provideClusterInfo"] !== "boolean") throw new UserError(`${where}.exec.provideClusterInfo must be true or false`);
  return e as ExecConfig;
}

/** Runs a kubeconfig's exec plugin when a credential is needed and the last one expired or was rejected. */
export class ExecPlugin implements CredentialSource {
  private readonly opts: ExecPluginOptions;
  private cached?: Credential;
  private pending?: Promise<Credential>;
  /** How many times the plugin ran (tests and logs). */
  runs = 0;

  constructor(opts: ExecPluginOptions) {
    this.opts = opts;
  }

  private now(): number {
    return (this.opts.now ?? Date.now)();
  }

  async get(): Promise<Credential> {
    const c = this.cached;
    if (c && (c.expiresAt === undefined || c.expiresAt > this.now())) return c;
    // Concurrent requests share one run of the plugin.
    this.pending ??= this.run().finally(() => (this.pending = undefined));
    this.cached = await this.pending;
    return this.cached;
  }

  invalidate(rejected?: Credential): void {
    if (rejected === undefined || rejected === this.cached) this.cached = undefined;
  }

  private interactive(): boolean {
    const mode = this.opts.exec.interactiveMode ?? "IfAvailable";
    if (mode === "Never") return false;
    const terminal = this.opts.stdinIsTerminal ?? process.stdin.isTTY === true;
    if (mode === "Always" && !terminal) {
      throw new UserError(`kubeconfig user "${this.opts.user}": its exec plugin needs a terminal (interactiveMode: Always), and there is none; run it where you can answer, or use a plugin mode that needs no input`);
    }
    return terminal;
  }

  private run(): Promise<Credential> {
    const exec = this.opts.exec;
    const apiVersion = exec.apiVersion ?? EXEC_API_VERSIONS[0];
    const command = exec.command ?? "";
    const path = command.includes("/") && !isAbsolute(command) ? join(this.opts.baseDir, command) : command;
    const interactive = this.interactive();
    const info = {
      apiVersion,
      kind: "ExecCredential",
      spec: { interactive, ...(exec.provideClusterInfo ? { cluster: this.opts.cluster } : {}) },
    };
    const env: NodeJS.ProcessEnv = { ...process.env, KUBERNETES_EXEC_INFO: JSON.stringify(info) };
    for (const v of exec.env ?? []) env[v.name] = v.value;
    const hint = exec.installHint ? `\n${exec.installHint.trim()}` : "";
    const what = `exec plugin "${command}" of kubeconfig user "${this.opts.user}"`;
    this.runs++;
    return new Promise((resolve, reject) => {
      // The plugin's messages (a login prompt, a warning) go to the user as kubectl passes them.
      const child = spawn(path, exec.args ?? [], { env, stdio: [interactive ? "inherit" : "ignore", "pipe", "pipe"] });
      let stdout = "";
      let stderr = "";
      child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
      child.stderr.setEncoding("utf8").on("data", (d: string) => {
        stderr += d;
        process.stderr.write(d);
      });
      child.on("error", (err: NodeJS.ErrnoException) => {
        reject(new UserError(err.code === "ENOENT" ? `${what} was not found on PATH or at ${path}${hint}` : `${what} could not start: ${err.message}${hint}`));
      });
      child.on("close", (code, signal) => {
        if (code !== 0) {
          const last = stderr.trim().split("\n").slice(-3).join(" / ");
          reject(new UserError(`${what} failed (${signal ?? `exit ${code}`})${last ? `: ${last}` : ""}${hint}`));
          return;
        }
        try {
          resolve(parseExecCredential(stdout, apiVersion));
        } catch (err) {
          reject(new UserError(`${what} printed no usable ExecCredential: ${(err as Error).message}`));
        }
      });
    });
  }
}

/** The credential in a plugin's output; throws saying what is wrong with it. */
export function parseExecCredential(stdout: string, apiVersion: string): Credential {
  let obj: unknown;
  try {
    obj = JSON.parse(stdout);
  } catch {
    throw new Error(`its output is not JSON (${JSON.stringify(stdout.slice(0, 80))})`);
  }
  const o = obj as { apiVersion?: unknown; kind?: unknown; status?: Record<string, unknown> };
  if (typeof obj !== "object" || obj === null || o.kind !== "ExecCredential") throw new Error("kind is not ExecCredential");
  if (o.apiVersion !== apiVersion) throw new Error(`apiVersion is ${JSON.stringify(o.apiVersion)}, the kubeconfig asked for ${apiVersion}`);
  const s = o.status;
  if (typeof s !== "object" || s === null) throw new Error("it has no status");
  const cred: Credential = {};
  if (typeof s["token"] === "string" && s["token"] !== "") cred.token = s["token"];
  const cert = s["clientCertificateData"];
  const key = s["clientKeyData"];
  if ((typeof cert === "string") !== (typeof key === "string")) throw new Error("status has only one of clientCertificateData and clientKeyData");
  if (typeof cert === "string" && typeof key === "string") {
    cred.clientCert = Buffer.from(cert);
    cred.clientKey = Buffer.from(key);
  }
  if (!cred.token && !cred.clientCert) throw new Error("status has neither a token nor a client certificate");
  const exp = s["expirationTimestamp"];
  if (exp !== undefined && exp !== null) {
    const t = typeof exp === "string" ? Date.parse(exp) : NaN;
    if (Number.isNaN(t)) throw new Error(`status.expirationTimestamp ${JSON.stringify(exp)} is not an RFC 3339 time`);
    cred.expiresAt = t;
  }
  return cred;
}
