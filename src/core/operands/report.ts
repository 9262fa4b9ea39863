import { DEPLOY_OPERANDS_LABEL, isGpuNode, type NodeLike } from "../gpu-node.ts";
import { deployLabel, gateLabel, GATE_OPEN, OPERANDS, type OperandKey } from "./common.ts";
import type { PodLike } from "./index.ts";

/** One GPU node's operands for `gpuop status`: ready, starting, waiting (for the operand it needs), off (deploy label), disabled (policy). */
export type OperandCell = "ready" | "starting" | "waiting" | "off" | "disabled";
export interface OperandNodeRow {
  node: string;
  operands: Record<OperandKey, OperandCell>;
}

export function operandNodeRows(nodes: readonly NodeLike[], pods: readonly PodLike[], disabled: ReadonlySet<string>): OperandNodeRow[] {
  const podOn = new Map<string, PodLike>();
  for (const p of pods) {
    if (p.metadata.deletionTimestamp || !p.spec?.nodeName) continue;
    podOn.set(`${p.metadata.labels?.["app"] ?? ""}/${p.spec.nodeName}`, p);
  }
  const rows: OperandNodeRow[] = [];
  for (const node of nodes) {
    if (!isGpuNode(node)) continue;
    const name = node.metadata.name ?? "";
    const labels = node.metadata.labels ?? {};
    const operands = {} as Record<OperandKey, OperandCell>;
    for (const info of OPERANDS) {
      const pod = podOn.get(`${info.name}/${name}`);
      let cell: OperandCell;
      if (disabled.has(info.key)) cell = "disabled";
      else if (labels[DEPLOY_OPERANDS_LABEL] === "false" || (labels[deployLabel(info)] ?? "true") !== "true") cell = "off";
      else if (pod) cell = pod.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True") ? "ready" : "starting";
      else cell = labels[gateLabel(info)] === GATE_OPEN ? "starting" : "waiting";
      operands[info.key] = cell;
    }
    rows.push({ node: name, operands });
  }
  return rows.sort((a, b) => (a.node < b.node ? -1 : a.node > b.node ? 1 : 0));
}
