import { readFileSync } from "node:fs";
import { runOperator } from "../controller/operator.ts";
import { jsonLogger } from "../kube/log.ts";
import { UserError } from "../core/errors.ts";
import { isDnsLabel } from "../core/names.ts";
import { parseRestrictedNodeLabel, RepositoryAllowList } from "../core/security.ts";
import { isDriverBranch, isFullDriverVersion } from "../core/tag.ts";
import { parseFlags, type Command } from "./command.ts";

const usage = `Usage: gpuop operator [flags]

Runs the controller that keeps NVIDIA driver DaemonSets in step with the
ClusterPolicy and the GPU nodes (in-cluster config, or a kubeconfig).

Flags:
  --kubeconfig <file>          kubeconfig to use (default: $KUBECONFIG, in-cluster, ~/.kube/config)
  --namespace <ns>             namespace of the driver DaemonSets (default: $OPERATOR_NAMESPACE or gpu-operator)
  --leader-elect               take part in leader election on a Lease (default: true)
  --no-leader-elect            run without leader election (one replica only)
  --lease-name <name>          Lease name (default: gpuop-leader)
  --metrics-bind-address <a>   host:port for /metrics, 0 to disable (default: :8080)
  --health-bind-address <a>    host:port for /healthz and /readyz, 0 to disable (default: :8081)
  --no-image-check             roll out without first asking the registry whether each driver image exists
                               (and without pinning each pool's tag to its digest)
  --plain-http-registries <l>  comma-separated registries (host:port) to reach over plain http
  --image-recheck-seconds <n>  how often to ask again for a missing driver image (default: 60); a found
                               image's digest is asked again 10 times less often, at most every 10 minutes
                               (a republished tag then rolls to the nodes)
  --allowed-image-repositories <l>
                               comma-separated registries or repositories (nvcr.io/nvidia,
                               registry.example.com:5000) that driver images must come from;
                               a policy naming another is refused (default: any)
  --registry-ca-file <file>    PEM CA certificates to trust for registries, besides the system's
  --gpu-node-label <key[=v]>   only nodes with this admin-only label (under node-restriction.kubernetes.io/,
                               which kubelets cannot set on themselves) get GPU labels and driver pods
  --default-driver-version <v> driver version for a ClusterPolicy without spec.driver.version, e.g. 550.54.15
                               (with usePrecompiled its branch, 550, is used); default: none, such a policy is refused
  --gpu-node-selector <l>      comma-separated key=value labels that mark GPU nodes as well as NFD's PCI label,
                               the clouds' accelerator labels and nvidia.com/gpu.present=true
  --no-conventional-fallback   leave a GPU node whose precompiled image is missing or cannot be
                               pulled without a driver, rather than run the conventional driver
                               of the branch (which compiles on the node and needs the OS package
                               repositories); a policy may override it with the annotation
                               gpuop.nvidia.com/conventional-fallback: "true" or "false"
  --image-pull-grace-seconds <n>
                               how long a precompiled driver pod may fail to pull its image
                               before its node falls back (default: 300)`;

function gpuNodeSelector(value: string | undefined): Record<string, string> | undefined {
  if (value === undefined || value.trim() === "") return undefined;
  const selector: Record<string, string> = {};
  for (const part of value.split(",").map((s) => s.trim()).filter(Boolean)) {
    const eq = part.indexOf("=");
    const key = eq > 0 ? part.slice(0, eq) : "";
    if (!key || !/^([a-z0-9.-]+\/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/.test(key)) {
      throw new UserError(`--gpu-node-selector takes key=value pairs separated by commas, like example.com/gpu=true; "${part}" is not one`);
    }
    selector[key] = part.slice(eq + 1);
  }
  return selector;
}

function defaultDriverVersion(value: string | undefined): string | undefined {
  if (value === undefined || value === "") return undefined;
  if (!isDriverBranch(value) && !isFullDriverVersion(value) && !/^sha256:[a-f0-9]{64}$/.test(value)) {
    throw new UserError(`--default-driver-version must be a driver version like 550.54.15, a branch like 550 or a sha256: digest, not "${value}"`);
  }
  return value;
}

function seconds(flag: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isFinite(n) || n < 1) throw new UserError(`--${flag} must be a number of seconds of at least 1, not "${value}"`);
  return n;
}

function list(value: string | undefined): string[] {
  return (value ?? "").split(",").map((s) => s.trim()).filter(Boolean);
}

function readCa(file: string): string {
  let pem: string;
  try {
    pem = readFileSync(file, "utf8");
  } catch (err) {
    throw new UserError(`--registry-ca-file ${file} cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}): give a PEM file of CA certificates`);
  }
  if (!pem.includes("-----BEGIN CERTIFICATE-----")) throw new UserError(`--registry-ca-file ${file} has no PEM certificate: give a file with -----BEGIN CERTIFICATE----- blocks`);
  return pem;
}

export const operatorCommand: Command = {
  name: "operator",
  summary: "Run the gpuop operator (the driver controller)",
  usage,
  async run(argv) {
    const { values } = parseFlags(
      argv,
      {
        kubeconfig: { type: "string" },
        namespace: { type: "string" },
        "leader-elect": { type: "boolean" },
        "no-leader-elect": { type: "boolean" },
        "lease-name": { type: "string" },
        "metrics-bind-address": { type: "string" },
        "health-bind-address": { type: "string" },
        "no-image-check": { type: "boolean" },
        "plain-http-registries": { type: "string" },
        "image-recheck-seconds": { type: "string" },
        "allowed-image-repositories": { type: "string" },
        "registry-ca-file": { type: "string" },
        "gpu-node-label": { type: "string" },
        "default-driver-version": { type: "string" },
        "gpu-node-selector": { type: "string" },
        "no-conventional-fallback": { type: "boolean" },
        "image-pull-grace-seconds": { type: "string" },
      },
      usage,
    );
    // Bad settings stop the operator before it connects to anything; the namespace becomes part of API paths.
    const namespace = values.namespace ?? process.env.OPERATOR_NAMESPACE ?? "gpu-operator";
    if (!isDnsLabel(namespace)) throw new UserError(`namespace "${namespace}" is not a Kubernetes namespace name: use lower-case letters, digits and '-' (at most 63)`);
    const allowed = list(values["allowed-image-repositories"]);
    new RepositoryAllowList(allowed);
    if (values["gpu-node-label"] !== undefined) parseRestrictedNodeLabel(values["gpu-node-label"]);
    return runOperator({
      ...(values.kubeconfig ? { kubeconfig: values.kubeconfig } : {}),
      namespace,
      leaderElect: !values["no-leader-elect"],
      leaseName: values["lease-name"] ?? "gpuop-leader",
      metricsAddress: values["metrics-bind-address"] ?? ":8080",
      healthAddress: values["health-bind-address"] ?? ":8081",
      log: jsonLogger({ component: "gpuop-operator" }),
      imageCheck: !values["no-image-check"],
      plainHttpRegistries: list(values["plain-http-registries"]),
      imageRecheckSeconds: seconds("image-recheck-seconds", values["image-recheck-seconds"], 60),
      allowedImageRepositories: allowed,
      ...(values["registry-ca-file"] ? { registryCa: readCa(values["registry-ca-file"]) } : {}),
      ...(values["gpu-node-label"] ? { gpuNodeLabel: values["gpu-node-label"] } : {}),
      ...(defaultDriverVersion(values["default-driver-version"]) ? { defaultDriverVersion: values["default-driver-version"]! } : {}),
      ...(gpuNodeSelector(values["gpu-node-selector"]) ? { gpuNodeSelector: gpuNodeSelector(values["gpu-node-selector"])! } : {}),
      conventionalFallback: !values["no-conventional-fallback"],
      imagePullGraceSeconds: seconds("image-pull-grace-seconds", values["image-pull-grace-seconds"], 300),
    });
  },
};
