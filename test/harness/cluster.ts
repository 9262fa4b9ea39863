import { execFile } from "node:child_process";
import { mkdirSync, rmSync, existsSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { KubeClient } from "../../src/kube/client.ts";
import { repoRoot, toolPath } from "./tools.ts";

const run = promisify(execFile);

/** A loopback-only Kubernetes cluster: etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok. */
export interface LocalCluster {
  name: string;
  kubeconfig: string;
  /** Runs the real kubectl against this cluster. */
  kubectl(args: string[], opts?: { input?: string }): Promise<{ stdout: string; stderr: string }>;
  client(): KubeClient;
}

/** kwokctl keeps its clusters, logs and pid files here (ignored by git). */
export const kwokWorkdir = join(repoRoot, ".tmp", "kwok");

export function kubeconfigPath(name: string): string {
  return join(kwokWorkdir, `kubeconfig-${name}.yaml`);
}

function kwokEnv(): NodeJS.ProcessEnv {
  return { ...process.env, KWOK_WORKDIR: kwokWorkdir, PATH: `${join(repoRoot, ".tools", "bin")}:${process.env.PATH}` };
}

async function kwokctl(args: string[]): Promise<string> {
  try {
    const { stdout, stderr } = await run(toolPath("kwokctl"), args, { env: kwokEnv(), maxBuffer: 64 << 20 });
    return stdout + stderr;
  } catch (err) {
    const e = err as { stderr?: string; stdout?: string; message: string };
    throw new Error(`kwokctl ${args.join(" ")} failed: ${e.stderr || e.stdout || e.message}`, { cause: err });
  }
}

/**
 * Starts a cluster with kwokctl's binary runtime pointed at the binaries that
 * hack/build-tools.sh built, so nothing is downloaded. A leftover cluster of the
 * same name (from a killed run) is removed first.
 */
/**
 * `opts`: kwokctl arguments (an array), or `extraArgs` for the components (`--extra-args`) and
 * `kwokctlArgs` for kwokctl itself.
 */
export async function startCluster(name = "gpuop-test", opts: { extraArgs?: string[]; kwokctlArgs?: string[] } | string[] = {}): Promise<LocalCluster> {
  const extraArgs = Array.isArray(opts) ? opts : (opts.kwokctlArgs ?? []);
  const componentArgs = Array.isArray(opts) ? [] : (opts.extraArgs ?? []);
  mkdirSync(kwokWorkdir, { recursive: true });
  await stopCluster(name);
  const kubeconfig = kubeconfigPath(name);
  await kwokctl([
    "create", "cluster",
    "--name", name,
    "--runtime", "binary",
    "--kubeconfig", kubeconfig,
    "--kube-apiserver-binary", toolPath("kube-apiserver"),
    "--kube-controller-manager-binary", toolPath("kube-controller-manager"),
    "--kube-scheduler-binary", toolPath("kube-scheduler"),
    "--kwok-controller-binary", toolPath("kwok"),
    "--etcd-binary", toolPath("etcd"),
    // Tests create many objects fast; the apiserver's default client limits would throttle the controllers.
    "--disable-qps-limits",
    // ConfigMap watches go to etcd, which compacts every few seconds: test/informer.test.ts
    // needs a real 410 Gone, which the watch cache would otherwise hide for minutes.
    "--extra-args", "kube-apiserver=watch-cache-sizes=configmaps#0",
    "--extra-args", "kube-apiserver=etcd-compaction-interval=5s",
    // More `component=flag=value` arguments, e.g. the benchmark's audit log.
    ...componentArgs.flatMap((a) => ["--extra-args", a]),
    "--wait", "2m",
    ...extraArgs,
  ]);
  return attachCluster(name);
}

/** A handle on a cluster that is already running (e.g. from `make cluster-up`). */
export function attachCluster(name: string): LocalCluster {
  const kubeconfig = kubeconfigPath(name);
  return {
    name,
    kubeconfig,
    async kubectl(args, opts = {}) {
      return new Promise((resolve, reject) => {
        // A discovery cache of its own: a stale shared one can map a kind to a group that is gone.
        const child = execFile(toolPath("kubectl"), ["--kubeconfig", kubeconfig, "--cache-dir", join(kwokWorkdir, `kubectl-cache-${name}`), ...args], { maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
          if (err) reject(Object.assign(new Error(`kubectl ${args.join(" ")}: ${stderr || err.message}`), { stdout, stderr }));
          else resolve({ stdout, stderr });
        });
        if (opts.input !== undefined) child.stdin?.end(opts.input);
      });
    },
    client: () => KubeClient.load({ kubeconfig }),
  };
}

/** Stops a cluster's processes and removes its state; a no-op when it is not there. */
export async function stopCluster(name: string): Promise<void> {
  if (existsSync(join(kwokWorkdir, "clusters", name))) {
    await kwokctl(["delete", "cluster", "--name", name, "--kubeconfig", kubeconfigPath(name)]);
  }
  rmSync(kubeconfigPath(name), { force: true });
  rmSync(join(kwokWorkdir, `kubectl-cache-${name}`), { recursive: true, force: true });
}
