// An index of cached pods by the node they run on, fed by an informer's change handler.
import type { ChangeType } from "./informer.ts";
import type { Pod } from "./types.ts";

/**
 * A node's pods and the version of them. A node runs one to a few of the pods an index holds
 * (its driver, its operands), so they sit in a small array: a Map per node cost about 400 bytes
 * even with one pod in it, for each of thousands of nodes in each index. The array is replaced,
 * never changed in place, so one that `on` handed out stays as it was.
 */
interface NodePods {
  version: number;
  pods: readonly Pod[];
}

const keyOf = (pod: Pod): string => pod.metadata.uid ?? `${pod.metadata.namespace}/${pod.metadata.name}`;

/**
 * Pods by the node they run on, with a version per node that moves on every change of that node's
 * pods, so a controller can keep what it worked out per node and redo only the nodes whose pods changed.
 */
export class PodsByNode {
  private readonly byNode = new Map<string, NodePods>();
  private next = 1;

  update(type: ChangeType, pod: Pod, old?: Pod): void {
    const key = keyOf(pod);
    const was = old?.spec?.nodeName;
    if (was !== undefined && was !== pod.spec?.nodeName) this.remove(was, key);
    const on = pod.spec?.nodeName;
    if (on === undefined) return;
    if (type === "deleted") {
      this.remove(on, key);
      return;
    }
    const entry = this.byNode.get(on);
    if (!entry) {
      this.byNode.set(on, { version: this.next++, pods: [pod] });
      return;
    }
    // A changed pod keeps its place among its node's pods; a new one goes last.
    const i = entry.pods.findIndex((p) => keyOf(p) === key);
    const pods = entry.pods.slice();
    if (i >= 0) pods[i] = pod;
    else pods.push(pod);
    entry.pods = pods;
    entry.version = this.next++;
  }

  private remove(node: string, key: string): void {
    const entry = this.byNode.get(node);
    const i = entry ? entry.pods.findIndex((p) => keyOf(p) === key) : -1;
    if (!entry || i < 0) return;
    if (entry.pods.length > 1) {
      entry.pods = entry.pods.filter((_, j) => j !== i);
      entry.version = this.next++;
      return;
    }
    // Back to version 0, that of a node without pods: no entry is kept for a node that is gone.
    this.byNode.delete(node);
  }

  /** The node's pods, in the order they came; the array is not changed later. */
  on(node: string): readonly Pod[] {
    return this.byNode.get(node)?.pods ?? [];
  }

  /** 0 for a node that never had a pod. */
  version(node: string): number {
    return this.byNode.get(node)?.version ?? 0;
  }
}
