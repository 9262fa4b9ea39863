import { canonicalJson, sameJson } from "../core/diff.ts";
import { CLUSTER_POLICY_PATH, type ClusterPolicy } from "../core/policy.ts";
import { isNotFound, type KubeClient } from "../kube/client.ts";

/**
 * While a rollout progresses, a status changes with every pod that becomes Ready: a write per
 * change would be a write per node or so. With `coalesce`, a part that says a rollout is in
 * progress, and differs from the last written only in counts and lists (its headline: state,
 * conditions' reasons, what the status says, is the same), waits until `intervalMs` after the
 * last write; any other change is written at once, a finished rollout's included. `write` then
 * says when to try again, so the last change is always written.
 */
export interface StatusCoalescing<Part> {
  intervalMs: number;
  /** The part says a rollout is under way (its counts move): only such a part may wait. */
  progressing: (part: Part) => boolean;
  /** What must never lag: a part whose headline differs from the stored one's is written at once. */
  headline: (part: Part | undefined) => string;
}

/**
 * Writes one controller's part of a ClusterPolicy's status with a merge patch, only when it
 * changed. A CRD that lacks some of gpuop's status fields (NVIDIA's has no pools, upgrades or
 * operands) prunes them, so the stored part never equals the wanted one: the write is also
 * skipped when neither what is wanted nor what is stored changed since the last write.
 */
export class StatusWrites<Part> {
  private readonly last = new Map<string, { desired: string; stored: string; at: number; headline?: string }>();
  /**
   * Per policy, the last call that had nothing to write: its part and the stored status object
   * (the cache's, which the informer replaces on every change). A pass that brings the same part
   * against the same object has nothing to write either, known without building the canonical
   * JSON of both parts, which every pass of both controllers did.
   */
  private readonly settled = new Map<string, { status: ClusterPolicy["status"]; part: Part }>();
  private readonly client: KubeClient;
  /** This controller's part of a stored status, and the patch that writes a wanted part. */
  private readonly partOf: (status: ClusterPolicy["status"]) => unknown;
  private readonly patchOf: (part: Part) => { status: unknown };
  private readonly coalesce: StatusCoalescing<Part> | undefined;

  constructor(client: KubeClient, partOf: (status: ClusterPolicy["status"]) => unknown, patchOf: (part: Part) => { status: unknown }, coalesce?: StatusCoalescing<Part>) {
    this.client = client;
    this.partOf = partOf;
    this.patchOf = patchOf;
    this.coalesce = coalesce;
  }

  /** Writes the part if it changed; returns in how many ms to call again when a write was put off (see StatusCoalescing). */
  async write(policy: ClusterPolicy, part: Part): Promise<number | undefined> {
    const key = policy.metadata.uid ?? policy.metadata.name;
    const settled = this.settled.get(key);
    if (settled && settled.status === policy.status && sameJson(settled.part, part)) return undefined;
    this.settled.delete(key);
    const desired = canonicalJson(part);
    const storedPart = this.partOf(policy.status);
    const current = canonicalJson(storedPart);
    const last = this.last.get(key);
    if (current === desired || (last && last.desired === desired && last.stored === current)) {
      this.settled.set(key, { status: policy.status, part });
      return undefined;
    }
    if (this.coalesce && last) {
      const wait = last.at + this.coalesce.intervalMs - performance.now();
      // Against the stored part, or against the last one written when the cache has not caught up with it yet.
      const headline = this.coalesce.headline(part);
      if (wait > 0 && this.coalesce.progressing(part) && (headline === last.headline || headline === this.coalesce.headline(storedPart as Part | undefined))) return Math.ceil(wait);
    }
    try {
      const stored = await this.client.mergePatch<ClusterPolicy>(`${CLUSTER_POLICY_PATH}/${policy.metadata.name}/status`, this.patchOf(part));
      this.last.set(key, { desired, stored: canonicalJson(this.partOf(stored?.status)), at: performance.now(), ...(this.coalesce ? { headline: this.coalesce.headline(part) } : {}) });
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
    return undefined;
  }
}
