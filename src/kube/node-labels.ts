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

  /** Removes and returns a node's pending changes (another writer sends them in its own patch). */
  take(node: string): LabelPatch | undefined {
    const patch = this.patches.get(node);
    this.patches.delete(node);
    return patch;
  }

  get size(): number {
    return this.patches.size;
  }

  /** Nodes with pending changes and what they are, in the order first added. */
  entries(): [string, LabelPatch][] {
    return [...this.patches];
  }

  /**
   * Sends one patch per node, `concurrency` at a time (one after another, a thousand
   * patches would take longer than the rollout they start), and empties the batch.
   * The first failure is thrown once the patches in flight are done; the retry
   * pass recomputes what is still to change.
   */
  async flush(client: KubeClient, onWritten?: (node: string, labels: LabelPatch) => void, concurrency = 16): Promise<void> {
    const pending = this.entries();
    this.patches.clear();
    let next = 0;
    let failure: unknown;
    const worker = async () => {
      while (next < pending.length && failure === undefined) {
        const [node, labels] = pending[next++]!;
        try {
          await client.mergePatch(`/api/v1/nodes/${node}`, { metadata: { labels } }, { discardBody: true });
          onWritten?.(node, labels);
        } catch (err) {
          failure ??= err;
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(concurrency, pending.length) }, worker));
    if (failure !== undefined) throw failure;
  }
}
