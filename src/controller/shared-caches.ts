// Caches both controllers read. Nodes and driver pods are most of what the
// operator holds in memory, so the operator keeps one of each, with one watch,
// and hands them to both controllers (src/controller/operator.ts). The operand
// pods too: the upgrade validates a node by its validator pod and restarts the
// driver once the node's operand pods are gone, and read them here rather than
// listing each node's pods every pass.
import type { KubeClient } from "../kube/client.ts";
import { Informer } from "../kube/informer.ts";
import type { Logger } from "../kube/log.ts";
import { NODE_UNREAD, OPERAND_POD_UNREAD, POD_UNREAD, slimNode, slimOperandPod, slimPod } from "../kube/transforms.ts";
import type { Node, Pod } from "../kube/types.ts";
import { DRIVER_APP, DRIVER_APP_LABEL } from "../core/render.ts";
import { OPERANDS } from "../core/operands/common.ts";

/** All nodes, with only the fields gpuop reads. */
export function nodeInformer(client: KubeClient, log: Logger): Informer<Node> {
  return new Informer(client, "/api/v1/nodes", {}, log, { transform: slimNode, quietUnchanged: true, unread: NODE_UNREAD });
}

/** The driver pods of every pool in the operator's namespace. */
export function driverPodInformer(client: KubeClient, namespace: string, log: Logger): Informer<Pod> {
  return new Informer(client, `/api/v1/namespaces/${namespace}/pods`, { labelSelector: `${DRIVER_APP_LABEL}=${DRIVER_APP}` }, log, { transform: slimPod, quietUnchanged: true, unread: POD_UNREAD });
}

/** The operand pods (toolkit, device plugin, GFD, DCGM exporter, validator) in the operator's namespace. */
export function operandPodInformer(client: KubeClient, namespace: string, log: Logger): Informer<Pod> {
  return new Informer(client, `/api/v1/namespaces/${namespace}/pods`, { labelSelector: `app in (${OPERANDS.map((o) => o.name).join(",")})` }, log, { transform: slimOperandPod, quietUnchanged: true, unread: OPERAND_POD_UNREAD });
}
