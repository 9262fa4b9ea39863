import { runOperator } from "../controller/operator.ts";
import { jsonLogger } from "../kube/log.ts";
import { UserError } from "../core/errors.ts";
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
  --plain-http-registries <l>  comma-separated registries (host:port) to reach over plain http
  --image-recheck-seconds <n>  how often to ask again for a missing driver image (default: 60)
  --default-driver-version <v> driver version for a ClusterPolicy without spec.driver.version, e.g. 550.54.15
                               (with usePrecompiled its branch, 550, is used); default: none, such a policy is refused
  --gpu-node-selector <l>      comma-separated key=value labels that mark GPU nodes as well as NFD's PCI label,
                               the clouds' accelerator labels and nvidia.com/gpu.present=true`;

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

function recheckSeconds(value: string | undefined): number {
  if (value === undefined) return 60;
  const n = Number(value);
  if (!Number.isFinite(n) || n < 1) throw new UserError(`--image-recheck-seconds must be a number of seconds of at least 1, not "${value}"`);
  return n;
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
        "default-driver-version": { type: "string" },
        "gpu-node-selector": { type: "string" },
      },
      usage,
    );
    return runOperator({
      ...(values.kubeconfig ? { kubeconfig: values.kubeconfig } : {}),
      namespace: values.namespace ?? process.env.OPERATOR_NAMESPACE ?? "gpu-operator",
      leaderElect: !values["no-leader-elect"],
      leaseName: values["lease-name"] ?? "gpuop-leader",
      metricsAddress: values["metrics-bind-address"] ?? ":8080",
      healthAddress: values["health-bind-address"] ?? ":8081",
      log: jsonLogger({ component: "gpuop-operator" }),
      imageCheck: !values["no-image-check"],
      plainHttpRegistries: (values["plain-http-registries"] ?? "").split(",").map((s) => s.trim()).filter(Boolean),
      imageRecheckSeconds: recheckSeconds(values["image-recheck-seconds"]),
      ...(defaultDriverVersion(values["default-driver-version"]) ? { defaultDriverVersion: values["default-driver-version"]! } : {}),
      ...(gpuNodeSelector(values["gpu-node-selector"]) ? { gpuNodeSelector: gpuNodeSelector(values["gpu-node-selector"])! } : {}),
    });
  },
};
