import type { KubeClient } from "./client.ts";

/** A merge patch of `metadata.labels`: a value sets the label, null removes it. */
export type LabelPatch = Record<string, string | null>;

/**
 * Node label changes gathered over one reconcile pass and written as one merge
 * patch per node, so a node that is both labelled as a GPU node and moved to a
 * driver pool in the same pass costs one write, not two.
 */
export class NodeLabelBatch {
  private readonly patches = new Map<string, LabelPatch>();

  /** Adds label changes for a node; a later value for the same label wins. */
  set(node: string, labels: LabelPatch): void {
    if (Object.keys(labels).length === 0) return;
    this.patches.set(node, { ...this.patches.get(node), ...labels });
  }

  get size(): number {
    return this.patches.size;
  }

  /** Nodes with pending changes and what they are, in the order first added. */
  entries(): [string, LabelPatch][] {
    return [...this.patches];
  }

  /** Sends one patch per node and empties the batch; a failure leaves the unsent patches for the caller's retry pass to recompute. */
  async flush(client: KubeClient, onWritten?: (node: string, labels: LabelPatch) => void): Promise<void> {
    const pending = this.entries();
    this.patches.clear();
    for (const [node, labels] of pending) {
      await client.mergePatch(`/api/v1/nodes/${node}`, { metadata: { labels } });
      onWritten?.(node, labels);
    }
  }
}
