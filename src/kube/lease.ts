import { isConflict, isNotFound, type KubeClient } from "./client.ts";
import { sleep } from "./informer.ts";
import type { Logger } from "./log.ts";

interface Lease {
  metadata: { name: string; namespace: string; resourceVersion?: string };
  spec: {
    holderIdentity?: string;
    leaseDurationSeconds?: number;
    acquireTime?: string;
    renewTime?: string;
    leaseTransitions?: number;
  };
}

export interface LeaderElectionOptions {
  namespace: string;
  name: string;
  identity: string;
  leaseDurationSeconds?: number;
  /**
   * A leader that has not renewed for this long (counted from when it sent its
   * last successful renewal) stops acting. Shorter than the lease, so it has
   * stopped before any other replica can judge the lease expired.
   */
  renewDeadlineSeconds?: number;
  renewEverySeconds?: number;
  retryEverySeconds?: number;
}

const microTime = () => new Date().toISOString().replace("Z", "000Z");

/**
 * Leader election on a coordination.k8s.io Lease. Expiry is judged by the
 * local clock from when this replica last saw the record change, so clock skew
 * between replicas does not matter.
 */
export class LeaderElector {
  private readonly client: KubeClient;
  private readonly opts: Required<LeaderElectionOptions>;
  private readonly log: Logger;
  private observed: { rv: string; at: number } | undefined;
  isLeader = false;

  constructor(client: KubeClient, opts: LeaderElectionOptions, log: Logger) {
    this.client = client;
    this.opts = { leaseDurationSeconds: 15, renewDeadlineSeconds: 10, renewEverySeconds: 5, retryEverySeconds: 2, ...opts };
    if (this.opts.renewDeadlineSeconds >= this.opts.leaseDurationSeconds) throw new Error("the renew deadline must be shorter than the lease duration");
    this.log = log;
  }

  private get path() {
    return `/apis/coordination.k8s.io/v1/namespaces/${this.opts.namespace}/leases/${this.opts.name}`;
  }

  /** One attempt to take or renew the lease; true when this replica holds it afterwards. */
  async tryAcquireOrRenew(signal?: AbortSignal): Promise<boolean> {
    const { identity, leaseDurationSeconds } = this.opts;
    // Lease requests pass the client's fence: they are how a replica learns whether it may act.
    const opts = { unfenced: true, ...(signal ? { signal } : {}) };
    let lease: Lease;
    try {
      lease = await this.client.get<Lease>(this.path, opts);
    } catch (err) {
      if (!isNotFound(err)) throw err;
      try {
        await this.client.create(`/apis/coordination.k8s.io/v1/namespaces/${this.opts.namespace}/leases`, {
          metadata: { name: this.opts.name, namespace: this.opts.namespace },
          spec: { holderIdentity: identity, leaseDurationSeconds, acquireTime: microTime(), renewTime: microTime(), leaseTransitions: 0 },
        }, opts);
        return true;
      } catch (e) {
        if (isConflict(e) || (e as { status?: number }).status === 409) return false;
        throw e;
      }
    }
    const rv = lease.metadata.resourceVersion ?? "";
    if (this.observed?.rv !== rv) this.observed = { rv, at: Date.now() };
    const holder = lease.spec.holderIdentity;
    const duration = (lease.spec.leaseDurationSeconds ?? leaseDurationSeconds) * 1000;
    const expired = Date.now() - this.observed.at > duration;
    if (holder && holder !== identity && !expired) return false;
    const taking = holder !== identity;
    lease.spec = {
      ...lease.spec,
      holderIdentity: identity,
      leaseDurationSeconds,
      renewTime: microTime(),
      ...(taking ? { acquireTime: microTime(), leaseTransitions: (lease.spec.leaseTransitions ?? 0) + 1 } : {}),
    };
    try {
      const updated = await this.client.request<Lease>("PUT", this.path, { ...opts, body: lease });
      this.observed = { rv: updated.metadata.resourceVersion ?? "", at: Date.now() };
      return true;
    } catch (err) {
      if (isConflict(err)) return false;
      throw err;
    }
  }

  /**
   * Blocks until this replica leads, then keeps renewing. Calls onLost and
   * returns as soon as the lease is seen held by another replica, or when no
   * renewal has succeeded within the renew deadline; every attempt is cut off
   * at that deadline, so a hung connection cannot keep a stale leader acting.
   */
  async run(onLeading: () => void, onLost: () => void, signal: AbortSignal): Promise<void> {
    const deadlineMs = this.opts.renewDeadlineSeconds * 1000;
    let lastRenew = 0;
    while (!signal.aborted && !this.isLeader) {
      const sentAt = Date.now();
      try {
        this.isLeader = await this.tryAcquireOrRenew(AbortSignal.any([signal, AbortSignal.timeout(deadlineMs)]));
        lastRenew = sentAt;
      } catch (err) {
        if (!signal.aborted) this.log.warn("leader election attempt failed", { error: (err as Error).message });
      }
      if (!this.isLeader) await sleep(this.opts.retryEverySeconds * 1000, signal);
    }
    if (signal.aborted) return;
    this.log.info("became leader", { lease: `${this.opts.namespace}/${this.opts.name}`, identity: this.opts.identity });
    onLeading();
    let wait = this.opts.renewEverySeconds * 1000;
    while (!signal.aborted) {
      const deadline = lastRenew + deadlineMs;
      await sleep(Math.min(wait, Math.max(deadline - Date.now(), 0)), signal);
      if (signal.aborted) break;
      const sentAt = Date.now();
      let lostBecause: string | undefined;
      try {
        if (sentAt >= deadline) throw new Error("renew deadline passed");
        if (await this.tryAcquireOrRenew(AbortSignal.any([signal, AbortSignal.timeout(deadline - sentAt)]))) {
          // Counted from the send: the server stored the renewal no earlier than that.
          lastRenew = sentAt;
          wait = this.opts.renewEverySeconds * 1000;
          continue;
        }
        lostBecause = "the lease is held by another replica";
      } catch (err) {
        if (signal.aborted) break;
        this.log.warn("lease renewal failed", { error: (err as Error).message });
        if (Date.now() >= deadline) lostBecause = `no renewal for ${this.opts.renewDeadlineSeconds}s`;
        wait = this.opts.retryEverySeconds * 1000;
      }
      if (lostBecause) {
        this.isLeader = false;
        this.log.error("lost leadership", { reason: lostBecause });
        onLost();
        return;
      }
    }
  }

  /** Gives the lease up on graceful shutdown so another replica takes over at once. */
  async release(): Promise<void> {
    if (!this.isLeader) return;
    this.isLeader = false;
    // Bounded: an unreachable API server must not hold up the exit; the lease then expires on its own.
    const opts = { unfenced: true, signal: AbortSignal.timeout(5000) };
    try {
      const lease = await this.client.get<Lease>(this.path, opts);
      if (lease.spec.holderIdentity !== this.opts.identity) return;
      lease.spec = { ...lease.spec, holderIdentity: "", leaseDurationSeconds: 1, renewTime: microTime() };
      await this.client.request("PUT", this.path, { ...opts, body: lease });
    } catch (err) {
      this.log.warn("could not release the lease", { error: (err as Error).message });
    }
  }
}
