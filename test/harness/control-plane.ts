// Stops and starts one process of a kwokctl binary-runtime cluster, as a crash
// and a restart would. kwokctl (0.8) keeps each component's pid in
// <cluster>/pids/<component>.pid and its binary, arguments and folder in
// <cluster>/kwok.yaml; a restart runs that command again and records the new
// pid, so `kwokctl delete cluster` still stops it.
import { spawn } from "node:child_process";
import { closeSync, existsSync, openSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseAllDocuments } from "yaml";
import { kwokWorkdir } from "./cluster.ts";

export type Component = "kube-apiserver" | "etcd" | "kube-controller-manager" | "kube-scheduler" | "kwok-controller";

const clusterDir = (cluster: string) => join(kwokWorkdir, "clusters", cluster);
const pidFile = (cluster: string, c: Component) => join(clusterDir(cluster), "pids", `${c}.pid`);

interface KwokComponent {
  name: string;
  binary: string;
  args?: string[];
  workDir?: string;
  envs?: { name: string; value: string }[];
}

function componentSpec(cluster: string, c: Component): KwokComponent {
  const docs = parseAllDocuments(readFileSync(join(clusterDir(cluster), "kwok.yaml"), "utf8")).map((d) => d.toJS() as { kind?: string; components?: KwokComponent[] });
  const spec = docs.find((d) => d.kind === "KwokctlConfiguration")?.components?.find((x) => x.name === c);
  if (!spec) throw new Error(`kwok.yaml of cluster ${cluster} has no component ${c}`);
  return spec;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export function componentPid(cluster: string, c: Component): number | undefined {
  const file = pidFile(cluster, c);
  if (!existsSync(file)) return undefined;
  const pid = Number(readFileSync(file, "utf8").trim());
  return Number.isInteger(pid) && pid > 0 && alive(pid) ? pid : undefined;
}

/** Stops a component (SIGTERM, then SIGKILL after 10 s) and waits until its process is gone. */
export async function stopComponent(cluster: string, c: Component, signal: "SIGTERM" | "SIGKILL" = "SIGTERM"): Promise<void> {
  const pid = componentPid(cluster, c);
  if (pid === undefined) throw new Error(`${c} of cluster ${cluster} is not running (no live pid in ${pidFile(cluster, c)})`);
  process.kill(pid, signal);
  const deadline = Date.now() + 10_000;
  while (alive(pid)) {
    if (Date.now() > deadline) process.kill(pid, "SIGKILL");
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Starts a stopped component again with the command kwokctl recorded, its output appended to its log. */
export function startComponent(cluster: string, c: Component): void {
  if (componentPid(cluster, c) !== undefined) throw new Error(`${c} of cluster ${cluster} is already running`);
  const spec = componentSpec(cluster, c);
  const log = openSync(join(clusterDir(cluster), "logs", `${c}.log`), "a");
  const env = { ...process.env, ...Object.fromEntries((spec.envs ?? []).map((e) => [e.name, e.value])) };
  const child = spawn(spec.binary, spec.args ?? [], { cwd: spec.workDir ?? clusterDir(cluster), env, detached: true, stdio: ["ignore", log, log] });
  closeSync(log);
  if (child.pid === undefined) throw new Error(`could not start ${spec.binary}`);
  writeFileSync(pidFile(cluster, c), String(child.pid));
  child.unref();
}

/** Fails with the end of its log when a component started again has not stayed up (a port taken meanwhile, say). */
export async function assertStaysUp(cluster: string, c: Component, forMs = 2000): Promise<void> {
  await new Promise((r) => setTimeout(r, forMs));
  if (componentPid(cluster, c) === undefined) {
    const log = readFileSync(join(clusterDir(cluster), "logs", `${c}.log`), "utf8");
    throw new Error(`${c} exited right after its restart:\n${log.slice(-1500)}`);
  }
}

/** Restarts any component that exited while the API server was away (kube-controller-manager exits when it loses its lease). */
export function restartExited(cluster: string, components: Component[]): Component[] {
  const restarted = components.filter((c) => componentPid(cluster, c) === undefined);
  for (const c of restarted) startComponent(cluster, c);
  return restarted;
}
