import { spawn, type ChildProcess } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { freePort } from "./registry.ts";
import { repoRoot } from "./tools.ts";

/** The real operator (`bin/gpuop operator`) in a child process. */
/** The V8 options the operator image runs with (its Dockerfile's `ENV NODE_OPTIONS`). */
export function imageNodeOptions(): string {
  return imageEnv("NODE_OPTIONS") ?? "";
}

/** A variable the operator image sets (`ENV NAME="value"` in its Dockerfile), for running the operator as deployed. */
export function imageEnv(name: string): string | undefined {
  return new RegExp(`^ENV ${name}="([^"]*)"$`, "m").exec(readFileSync(join(repoRoot, "images", "operator", "Dockerfile"), "utf8"))?.[1];
}

export interface OperatorProcess {
  proc: ChildProcess;
  identity: string;
  metricsUrl: string;
  healthUrl: string;
  logs(): string;
  /** SIGTERM (graceful) or SIGKILL; resolves with the exit code once it has exited. */
  stop(signal?: "SIGTERM" | "SIGKILL"): Promise<number | null>;
  metrics(): Promise<string>;
  /** Write requests (create, update, patch, delete) counted by the operator's own client. */
  writes(): Promise<number>;
}

export async function startOperator(opts: { kubeconfig: string; namespace?: string; identity?: string; leaderElect?: boolean; env?: NodeJS.ProcessEnv; args?: string[] }): Promise<OperatorProcess> {
  const metricsPort = await freePort();
  const healthPort = await freePort();
  const identity = opts.identity ?? `test-${process.pid}-${metricsPort}`;
  const args = [
    "operator",
    "--kubeconfig", opts.kubeconfig,
    "--namespace", opts.namespace ?? "gpu-operator",
    "--metrics-bind-address", `127.0.0.1:${metricsPort}`,
    "--health-bind-address", `127.0.0.1:${healthPort}`,
    ...(opts.leaderElect === false ? ["--no-leader-elect"] : []),
    // Tests use images of nvcr.io, which is unreachable here: check images only where a test asks to.
    ...(opts.args ?? ["--no-image-check"]),
  ];
  const proc = spawn(join(repoRoot, "bin", "gpuop"), args, { env: { ...process.env, POD_NAME: identity, ...opts.env }, stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  proc.stdout!.on("data", (d: Buffer) => (output += d.toString()));
  proc.stderr!.on("data", (d: Buffer) => (output += d.toString()));
  const exited = new Promise<number | null>((resolve) => proc.on("exit", (code) => resolve(code)));
  const metricsUrl = `http://127.0.0.1:${metricsPort}/metrics`;
  const handle: OperatorProcess = {
    proc,
    identity,
    metricsUrl,
    healthUrl: `http://127.0.0.1:${healthPort}`,
    logs: () => output,
    async stop(signal = "SIGTERM") {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      return exited;
    },
    async metrics() {
      const res = await fetch(metricsUrl);
      return res.text();
    },
    async writes() {
      const text = await handle.metrics();
      let n = 0;
      for (const m of text.matchAll(/^gpuop_api_requests_total\{verb="(create|update|patch|delete)"\} (\d+)$/gm)) n += Number(m[2]);
      return n;
    },
  };
  // Wait until the health endpoint answers, or the process dies.
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`operator exited with ${proc.exitCode}:\n${output}`);
    try {
      if ((await fetch(`${handle.healthUrl}/healthz`)).ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      await handle.stop("SIGKILL");
      throw new Error(`operator did not start:\n${output}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return handle;
}
