import { runOperator } from "../controller/operator.ts";
import { jsonLogger } from "../kube/log.ts";
import { UserError } from "../core/errors.ts";
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
  --no-conventional-fallback   leave a GPU node whose precompiled image is missing or cannot be
                               pulled without a driver, rather than run the conventional driver
                               of the branch (which compiles on the node and needs the OS package
                               repositories); a policy may override it with the annotation
                               gpuop.nvidia.com/conventional-fallback: "true" or "false"
  --image-pull-grace-seconds <n>
                               how long a precompiled driver pod may fail to pull its image
                               before its node falls back (default: 300)`;

function seconds(flag: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isFinite(n) || n < 1) throw new UserError(`--${flag} must be a number of seconds of at least 1, not "${value}"`);
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
        "no-conventional-fallback": { type: "boolean" },
        "image-pull-grace-seconds": { type: "string" },
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
      imageRecheckSeconds: seconds("image-recheck-seconds", values["image-recheck-seconds"], 60),
      conventionalFallback: !values["no-conventional-fallback"],
      imagePullGraceSeconds: seconds("image-pull-grace-seconds", values["image-pull-grace-seconds"], 300),
    });
  },
};
