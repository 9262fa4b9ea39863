// NVIDIA's GPU Operator, built from the Go module proxy by
// `hack/build-tools.sh nvidia-gpu-operator`, run against the benchmark's cluster.
//
// What the simulated cluster needs for it (the workarounds the report names):
// - its files at fixed paths: manifests under /opt/gpu-operator (the module's
//   assets/ and manifests/), and the host's os-release at /host-etc/os-release
//   (its container mounts the host's /etc there; it looks for OpenShift in it).
//   The process runs chrooted into a tmpfs root, laid out that way, in a private
//   mount namespace (unshare, as root): nothing outside the repo is written.
// - its CRDs (ClusterPolicy, NVIDIADriver) from the module, not gpuop's.
// - a ClusterPolicy with every operand but the driver disabled (toolkit, device
//   plugin, DCGM, GFD, MIG manager, …): kwok runs no containers, and only the
//   driver is compared. The validator DaemonSet cannot be disabled; kwok runs its pods.
// - RBAC: it runs as the benchmark's ServiceAccount bound to cluster-admin
//   (the chart's Role and ClusterRole are not installed).
// - NFD: no NFD runs; the simulated nodes carry NFD's labels (PCI vendor 10de,
//   kernel, OS release), which NVIDIA's operator reads as it would NFD's.
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { closeSync, existsSync, mkdirSync, openSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { repoRoot } from "../../test/harness/tools.ts";
import { freePort } from "../../test/harness/registry.ts";
import type { LocalCluster } from "../../test/harness/cluster.ts";
import { eventually } from "../../test/harness/wait.ts";

const run = promisify(execFile);
const moduleDir = join(repoRoot, "tools", "go", "nvidia-gpu-operator");

/** The pinned pseudo-version, from hack/versions.env. */
function version(): string {
  const m = /^NVIDIA_GPU_OPERATOR_VERSION=(\S+)$/m.exec(readFileSync(join(repoRoot, "hack", "versions.env"), "utf8"));
  if (!m) throw new Error("hack/versions.env pins no NVIDIA_GPU_OPERATOR_VERSION");
  return m[1]!;
}

export function nvidiaBinary(): string {
  const bin = join(repoRoot, ".tools", `nvidia-gpu-operator-${version()}`, "bin", "gpu-operator");
  if (!existsSync(bin)) throw new Error(`${bin} is missing: run \`make bench\` (or hack/build-tools.sh nvidia-gpu-operator)`);
  return bin;
}

/** The module's source folder in the Go module cache (downloaded when missing, as `go` does). */
export async function nvidiaModuleDir(): Promise<string> {
  const { stdout } = await run("go", ["mod", "download", "-json", "github.com/NVIDIA/gpu-operator"], {
    cwd: moduleDir,
    env: { ...process.env, PATH: `/usr/local/go/bin:${process.env.PATH}`, GOFLAGS: "-mod=readonly", GOTOOLCHAIN: "local" },
  });
  const dir = (JSON.parse(stdout) as { Dir?: string }).Dir;
  if (!dir) throw new Error(`go mod download gave no folder for github.com/NVIDIA/gpu-operator: ${stdout}`);
  return dir;
}

export async function installNvidiaCrds(cluster: LocalCluster, src: string): Promise<void> {
  for (const f of ["nvidia.com_clusterpolicies.yaml", "nvidia.com_nvidiadrivers.yaml"]) {
    await cluster.kubectl(["apply", "--server-side", "-f", join(src, "deployments", "gpu-operator", "crds", f)]);
  }
  // Right after the apply, kubectl wait can fail on a status without conditions yet: poll.
  await eventually("NVIDIA's CRDs established", async () => {
    await cluster.kubectl(["wait", "--for=condition=Established", "crd/clusterpolicies.nvidia.com", "crd/nvidiadrivers.nvidia.com", "--timeout=10s"]);
    return true;
  }, { timeoutMs: 60_000, intervalMs: 1000 });
}

/** The ClusterPolicy for NVIDIA's operator: the same driver and upgrade policy as gpuop's, every other operand off. */
export function nvidiaPolicy(driver: { repository: string; version: string; maxUnavailable: string }) {
  const off = { enabled: false };
  return {
    apiVersion: "nvidia.com/v1",
    kind: "ClusterPolicy",
    metadata: { name: "cluster-policy" },
    spec: {
      operator: { defaultRuntime: "containerd" },
      daemonsets: { updateStrategy: "RollingUpdate" },
      driver: {
        enabled: true,
        usePrecompiled: false,
        repository: driver.repository,
        image: "driver",
        version: driver.version,
        manager: { repository: "nvcr.io/nvidia/cloud-native", image: "k8s-driver-manager", version: "v0.8.1" },
        upgradePolicy: { autoUpgrade: true, maxParallelUpgrades: 0, maxUnavailable: driver.maxUnavailable, drain: { enable: false }, podDeletion: { force: false, timeoutSeconds: 300 } },
      },
      validator: { repository: "nvcr.io/nvidia/cloud-native", image: "gpu-operator-validator", version: "v25.3.4" },
      toolkit: off,
      devicePlugin: off,
      dcgm: off,
      dcgmExporter: off,
      gfd: off,
      migManager: off,
      nodeStatusExporter: off,
      gds: off,
      gdrcopy: off,
      vgpuManager: off,
      vgpuDeviceManager: off,
      vfioManager: off,
      sandboxDevicePlugin: off,
      kataManager: off,
      ccManager: off,
      sandboxWorkloads: off,
      cdi: off,
      psp: off,
      mig: { strategy: "single" },
    },
  };
}

export interface NvidiaProcess {
  proc: ChildProcess;
  /** The end of its log. */
  logs(): string;
  stop(): Promise<void>;
}

/** Starts NVIDIA's operator with its manifests at /opt/gpu-operator in a private mount namespace. */
export async function startNvidiaOperator(opts: { kubeconfig: string; namespace: string; src: string; logFile: string; workDir: string }): Promise<NvidiaProcess> {
  const [metrics, health] = [await freePort(), await freePort()];
  const root = join(opts.workDir, "root");
  mkdirSync(root, { recursive: true });
  // The root is laid out as NVIDIA's image: each asset folder and manifests/ in
  // /opt/gpu-operator (copied: it walks them without following symlinks).
  const script = [
    "set -e",
    'mount -t tmpfs tmpfs "$ROOT"',
    'mkdir -p "$ROOT/opt/gpu-operator" "$ROOT/host-etc" "$ROOT/tmp" "$ROOT/proc" "$ROOT/dev"',
    'cp -r "$SRC/assets/." "$SRC/manifests" "$ROOT/opt/gpu-operator/"',
    'cp /etc/os-release "$ROOT/host-etc/os-release"',
    'cp "$BIN" "$ROOT/gpu-operator" && cp "$KCFG" "$ROOT/kubeconfig"',
    'mount --rbind /proc "$ROOT/proc" && mount --rbind /dev "$ROOT/dev"',
    'exec chroot "$ROOT" /gpu-operator "$@"',
  ].join("\n");
  const args = ["--mount", "--propagation", "private", "sh", "-c", script, "sh",
    `--metrics-bind-address=127.0.0.1:${metrics}`, `--health-probe-bind-address=127.0.0.1:${health}`, "--leader-elect=false", "--zap-log-level=info"];
  const logFd = openSync(opts.logFile, "w");
  const proc = spawn("unshare", args, {
    env: { ...process.env, SRC: opts.src, ROOT: root, BIN: nvidiaBinary(), KCFG: opts.kubeconfig, KUBECONFIG: "/kubeconfig", OPERATOR_NAMESPACE: opts.namespace },
    // Its logs are large (whole objects): straight to a file.
    stdio: ["ignore", logFd, logFd],
  });
  closeSync(logFd);
  const tail = () => {
    const text = readFileSync(opts.logFile, "utf8");
    return text.slice(-3000);
  };
  const exited = new Promise<void>((resolve) => proc.on("exit", () => resolve()));
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`NVIDIA's operator exited with ${proc.exitCode} (it needs root for its private /opt mount):\n${tail()}`);
    try {
      if ((await fetch(`http://127.0.0.1:${health}/healthz`)).ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      proc.kill("SIGKILL");
      throw new Error(`NVIDIA's operator did not start:\n${tail()}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  return {
    proc,
    logs: tail,
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill("SIGTERM");
      await exited;
    },
  };
}
