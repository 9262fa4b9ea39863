import { CLUSTER_POLICY_PATH, selectActivePolicy, type ClusterPolicy } from "../core/policy.ts";
import { driverStatusRows } from "../core/report.ts";
import { MANAGED_BY_LABEL, MANAGED_BY } from "../core/render.ts";
import { OPERANDS } from "../core/operands/common.ts";
import { operandNodeRows } from "../core/operands/report.ts";
import { KubeClient } from "../kube/client.ts";
import type { DaemonSet, Node, Pod } from "../kube/types.ts";
import { stripControl } from "../core/security.ts";
import { formatData, formatTable, outputFormat, parseFlags, type Command } from "./command.ts";

/** Policy values, node labels and messages can hold escape sequences: none reach the terminal. */
const write = (text: string) => process.stdout.write(stripControl(text));

const usage = `Usage: gpuop status [flags]

Shows the active ClusterPolicy's state and, for each GPU node, its kernel,
OS tag, driver mode, DaemonSet, the image its driver pod runs, the image its
DaemonSet wants ("=" when the same), its driver upgrade state
(nvidia.com/gpu-driver-upgrade-state), the driver pod and the pod's phase; then
each operand (toolkit, device plugin, GFD, DCGM exporter, validator) per node.

Flags:
  --kubeconfig <file>   kubeconfig to use (default: $KUBECONFIG, ~/.kube/config)
  -n, --namespace <ns>  namespace of the driver DaemonSets (default: gpu-operator)
  -o, --output <fmt>    table (default), json or yaml`;

export const statusCommand: Command = {
  name: "status",
  summary: "Show the ClusterPolicy's state and each GPU node's driver",
  usage,
  async run(argv) {
    const { values } = parseFlags(argv, { kubeconfig: { type: "string" }, namespace: { type: "string", short: "n" }, output: { type: "string", short: "o" } }, usage);
    const format = outputFormat(values.output);
    const ns = values.namespace ?? "gpu-operator";
    const client = KubeClient.load(values.kubeconfig ? { kubeconfig: values.kubeconfig } : {});
    try {
      const [policies, nodes, daemonSets, pods, operandPods] = await Promise.all([
        client.list<ClusterPolicy>(CLUSTER_POLICY_PATH).catch((err: unknown) => {
          if ((err as { status?: number }).status === 404) return { items: [] as ClusterPolicy[] };
          throw err;
        }),
        client.list<Node>("/api/v1/nodes"),
        client.list<DaemonSet>(`/apis/apps/v1/namespaces/${ns}/daemonsets`, { labelSelector: `${MANAGED_BY_LABEL}=${MANAGED_BY}` }),
        client.list<Pod>(`/api/v1/namespaces/${ns}/pods`, { labelSelector: "app=nvidia-driver-daemonset" }),
        client.list<Pod>(`/api/v1/namespaces/${ns}/pods`, { labelSelector: `app in (${OPERANDS.map((o) => o.name).join(",")})` }),
      ]);
      const policy = selectActivePolicy(policies.items);
      const rows = driverStatusRows(nodes.items, daemonSets.items, pods.items);
      const summary = policy
        ? {
            name: policy.metadata.name,
            state: policy.status?.state ?? "unknown",
            usePrecompiled: policy.spec?.driver?.usePrecompiled ?? false,
            version: policy.spec?.driver?.version ?? "",
            conditions: (policy.status?.conditions ?? []).map((c) => ({ type: c.type, status: c.status, reason: c.reason, message: c.message })),
            ...(policy.status?.upgrades ? { upgrades: policy.status.upgrades } : {}),
          }
        : undefined;
      const operandStatus = policy?.status?.operands ?? [];
      const operandRows = operandNodeRows(nodes.items, operandPods.items, new Set(operandStatus.filter((o) => o.state === "disabled").map((o) => o.name)));
      if (format !== "table") {
        write(formatData({ policy: summary ?? null, nodes: rows, operands: operandStatus, operandNodes: operandRows }, format));
        return 0;
      }
      if (!summary) {
        write("ClusterPolicy: none (create one, e.g. with the Helm chart, to deploy drivers)\n");
      } else {
        write(`ClusterPolicy: ${summary.name}   state: ${summary.state}   usePrecompiled: ${summary.usePrecompiled}   version: ${summary.version}\n`);
        for (const c of summary.conditions) if (c.status === "True" && c.type === "Error") write(`Error (${c.reason}): ${c.message}\n`);
        const ready = summary.conditions.find((c) => c.type === "Ready");
        if (ready && ready.status !== "True") write(`Not ready (${ready.reason}): ${ready.message}\n`);
        const u = summary.upgrades;
        if (u) {
          const states = Object.entries(u.nodesByState).map(([state, n]) => `${state} ${n}`).join(", ");
          if (states) write(`Driver upgrades: ${states}\n`);
          if (u.pending.length > 0) write(`  waiting for the budget: ${u.pending.join(", ")}\n`);
          for (const f of u.failed) write(`  failed: ${f.node}: ${f.reason}\n`);
          if (u.outdated.length > 0) write(`  outdated, left in place (autoUpgrade false or skip label): ${u.outdated.join(", ")}\n`);
        }
      }
      write("\n");
      if (rows.length === 0) {
        write("No GPU nodes (nodes labelled feature.node.kubernetes.io/pci-10de.present=true).\n");
        return 0;
      }
      write(
        formatTable(
          ["NODE", "KERNEL", "OS", "MODE", "DAEMONSET", "IMAGE", "WANTED", "UPGRADE", "POD", "PHASE"],
          rows.map((r) => [r.node, r.kernel, r.osTag, r.mode, r.daemonSet, r.image, r.wantedImage === "" || r.wantedImage === r.image || r.image.startsWith(`${r.wantedImage}@`) ? "=" : r.wantedImage, r.upgradeState, r.pod, r.problem ? `${r.phase}: ${r.problem}` : r.phase]),
        ),
      );
      // Why a node is on the conventional fallback or has no driver, in the operator's words.
      const notes = rows.filter((r) => r.reason);
      if (notes.length > 0) process.stdout.write(`\n${notes.map((r) => `${r.node}: ${r.reason}`).join("\n")}\n`);
      if (operandStatus.length > 0) {
        process.stdout.write(`\nOperands: ${operandStatus.map((o) => `${o.name} ${o.state}${typeof o["readyPods"] === "number" ? ` ${String(o["readyPods"])}/${String(o["nodes"])}` : ""}`).join(", ")}\n`);
        for (const o of operandStatus) if (typeof o["message"] === "string") process.stdout.write(`  ${o.name}: ${o["message"]}\n`);
      }
      if (operandRows.length > 0) {
        process.stdout.write("\n");
        process.stdout.write(formatTable(["NODE", ...OPERANDS.map((o) => o.key.toUpperCase())], operandRows.map((r) => [r.node, ...OPERANDS.map((o) => r.operands[o.key])])));
      }
      return 0;
    } finally {
      await client.close();
    }
  },
};
