// An index of cached pods by the node they run on, fed by an informer's change handler.
import type { ChangeType } from "./informer.ts";
import type { Pod } from "./types.ts";

/**
 * Pods by node, with a version per node that moves on every change of that node's pods, so a
 * controller can keep what it worked out per node and redo only the nodes whose pods changed.
 */
/** Pods by the node they run on, with a version per node that moves on every change of its pods. */
export class PodsByNode {
  private readonly pods = new Map<string, Map<string, Pod>>();
  private readonly versions = new Map<string, number>();
  private next = 1;

  update(type: ChangeType, pod: Pod, old?: Pod): void {
    const key = pod.metadata.uid ?? `${pod.metadata.namespace}/${pod.metadata.name}`;
    const was = old?.spec?.nodeName;
    if (was !== undefined && was !== pod.spec?.nodeName) this.remove(was, key);
    const on = pod.spec?.nodeName;
    if (on === undefined) return;
    if (type === "deleted") this.remove(on, key);
    else {
      let m = this.pods.get(on);
      if (!m) this.pods.set(on, (m = new Map()));
      m.set(key, pod);
      this.versions.set(on, this.next++);
    }
  }

  private remove(node: string, key: string): void {
    const m = this.pods.get(node);
    if (!m?.delete(key)) return;
    if (m.size > 0) {
      this.versions.set(node, this.next++);
      return;
    }
    // Back to version 0, that of a node without pods: no entry is kept for a node that is gone.
    this.pods.delete(node);
    this.versions.delete(node);
  }

  on(node: string): Pod[] {
    return [...(this.pods.get(node)?.values() ?? [])];
  }

  /** 0 for a node that never had a pod. */
  version(node: string): number {
    return this.versions.get(node) ?? 0;
  }
}
