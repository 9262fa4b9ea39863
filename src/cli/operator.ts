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
                               (and without pinning each pool's tag to its digest)
  --plain-http-registries <l>  comma-separated registries (host:port) to reach over plain http
  --image-recheck-seconds <n>  how often to ask again for a missing driver image (default: 60); a found
                               image's digest is asked again 10 times less often, at most every 10 minutes
                               (a republished tag then rolls to the nodes)`;

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
    });
  },
};
