import { runOperator } from "../controller/operator.ts";
import { jsonLogger } from "../kube/log.ts";
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
  --health-bind-address <a>    host:port for /healthz and /readyz, 0 to disable (default: :8081)`;

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
    });
  },
};
