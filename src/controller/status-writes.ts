import { canonicalJson } from "../core/diff.ts";
import { CLUSTER_POLICY_PATH, type ClusterPolicy } from "../core/policy.ts";
import { isNotFound, type KubeClient } from "../kube/client.ts";

/**
 * Writes one controller's part of a ClusterPolicy's status with a merge patch, only when it
 * changed. A CRD that lacks some of gpuop's status fields (NVIDIA's has no pools, upgrades or
 * operands) prunes them, so the stored part never equals the wanted one: the write is also
 * skipped when neither what is wanted nor what is stored changed since the last write.
 */
export class StatusWrites<Part> {
  private readonly last = new Map<string, { desired: string; stored: string }>();
  private readonly client: KubeClient;
  /** This controller's part of a stored status, and the patch that writes a wanted part. */
  private readonly partOf: (status: ClusterPolicy["status"]) => unknown;
  private readonly patchOf: (part: Part) => { status: unknown };

  constructor(client: KubeClient, partOf: (status: ClusterPolicy["status"]) => unknown, patchOf: (part: Part) => { status: unknown }) {
    this.client = client;
    this.partOf = partOf;
    this.patchOf = patchOf;
  }

  async write(policy: ClusterPolicy, part: Part): Promise<void> {
    const desired = canonicalJson(part);
    const current = canonicalJson(this.partOf(policy.status));
    if (current === desired) return;
    const key = policy.metadata.uid ?? policy.metadata.name;
    const last = this.last.get(key);
    if (last && last.desired === desired && last.stored === current) return;
    try {
      const stored = await this.client.mergePatch<ClusterPolicy>(`${CLUSTER_POLICY_PATH}/${policy.metadata.name}/status`, this.patchOf(part));
      this.last.set(key, { desired, stored: canonicalJson(this.partOf(stored?.status)) });
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
  }
}
