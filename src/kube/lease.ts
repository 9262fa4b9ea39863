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
    this.opts = { leaseDurationSeconds: 15, renewEverySeconds: 5, retryEverySeconds: 2, ...opts };
    this.log = log;
  }

  private get path() {
    return `/apis/coordination.k8s.io/v1/namespaces/${this.opts.namespace}/leases/${this.opts.name}`;
  }

  /** One attempt to take or renew the lease; true when this replica holds it afterwards. */
  async tryAcquireOrRenew(): Promise<boolean> {
    const { identity, leaseDurationSeconds } = this.opts;
    let lease: Lease;
    try {
      lease = await this.client.get<Lease>(this.path);
    } catch (err) {
      if (!isNotFound(err)) throw err;
      try {
        await this.client.create(`/apis/coordination.k8s.io/v1/namespaces/${this.opts.namespace}/leases`, {
          metadata: { name: this.opts.name, namespace: this.opts.namespace },
          spec: { holderIdentity: identity, leaseDurationSeconds, acquireTime: microTime(), renewTime: microTime(), leaseTransitions: 0 },
        });
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
      const updated = await this.client.request<Lease>("PUT", this.path, { body: lease });
      this.observed = { rv: updated.metadata.resourceVersion ?? "", at: Date.now() };
      return true;
    } catch (err) {
      if (isConflict(err)) return false;
      throw err;
    }
  }

  /**
   * Blocks until this replica leads, then keeps renewing; calls onLost and
   * returns if renewal fails for longer than the lease duration.
   */
  async run(onLeading: () => void, onLost: () => void, signal: AbortSignal): Promise<void> {
    while (!signal.aborted && !this.isLeader) {
      try {
        this.isLeader = await this.tryAcquireOrRenew();
      } catch (err) {
        this.log.warn("leader election attempt failed", { error: (err as Error).message });
      }
      if (!this.isLeader) await sleep(this.opts.retryEverySeconds * 1000, signal);
    }
    if (signal.aborted) return;
    this.log.info("became leader", { lease: `${this.opts.namespace}/${this.opts.name}`, identity: this.opts.identity });
    onLeading();
    let lastRenew = Date.now();
    while (!signal.aborted) {
      await sleep(this.opts.renewEverySeconds * 1000, signal);
      if (signal.aborted) break;
      try {
        if (await this.tryAcquireOrRenew()) lastRenew = Date.now();
        else throw new Error("lease taken by another replica");
      } catch (err) {
        this.log.warn("lease renewal failed", { error: (err as Error).message });
        if (Date.now() - lastRenew > this.opts.leaseDurationSeconds * 1000) {
          this.isLeader = false;
          this.log.error("lost leadership");
          onLost();
          return;
        }
      }
    }
  }

  /** Gives the lease up on graceful shutdown so another replica takes over at once. */
  async release(): Promise<void> {
    if (!this.isLeader) return;
    this.isLeader = false;
    try {
      const lease = await this.client.get<Lease>(this.path);
      if (lease.spec.holderIdentity !== this.opts.identity) return;
      lease.spec = { ...lease.spec, holderIdentity: "", leaseDurationSeconds: 1, renewTime: microTime() };
      await this.client.request("PUT", this.path, { body: lease });
    } catch (err) {
      this.log.warn("could not release the lease", { error: (err as Error).message });
    }
  }
}
