import type { GpuNodeFacts, GpuNodeOptions } from "../core/gpu-node.ts";
import { canonicalJson, isSubset } from "../core/diff.ts";
import { CLUSTER_POLICY_API_VERSION, CLUSTER_POLICY_KIND, CLUSTER_POLICY_PATH, normalizePolicy, policySpecKey, selectActivePolicy, withDefaultDriverVersion, type ClusterPolicy, type ClusterPolicyStatus } from "../core/policy.ts";
import { renderDriverDaemonSets, pinDriverDigest, DRIVER_SERVICE_ACCOUNT, type DriverDaemonSet, MANAGED_BY_LABEL, MANAGED_BY } from "../core/render.ts";
import { POOL_NODE_LABEL } from "../core/rollout.ts";
import { computeStatus, ignoredStatus } from "../core/status.ts";
import { DEFAULT_PULL_GRACE_MS, poolsWithFallback, PULL_FAILED_ANNOTATION } from "../core/fallback.ts";
import { restrictedNodes, type RepositoryAllowList, type RestrictedNodeLabel } from "../core/security.ts";
import { UserError } from "../core/errors.ts";
import { isConflict, isNotFound, type KubeClient } from "../kube/client.ts";
import type { EventRecorder } from "../kube/events.ts";
import { Informer } from "../kube/informer.ts";
import { NodeLabelBatch } from "../kube/node-labels.ts";
import { slimDaemonSet } from "../kube/transforms.ts";
import type { Logger } from "../kube/log.ts";
import type { DaemonSet, Node, Pod } from "../kube/types.ts";
import { ConventionalFallback } from "./fallback.ts";
import { AppliedDaemonSet, DriverMemory, driverModeSeries, fleetCounts, labelsMatter, type FleetCounts } from "./driver-memory.ts";
import type { ImageChecker } from "./image-check.ts";
import type { OperatorMetrics } from "./metrics.ts";
import { StatusWrites } from "./status-writes.ts";
import { UpgradeExecutor, type UpgradeOutcome } from "./upgrade-controller.ts";
import { WorkQueue } from "./workqueue.ts";
import { cachesSynced, runController } from "./controller-loop.ts";
import { driverPodInformer, nodeInformer, operandPodInformer } from "./shared-caches.ts";
import { IN_PROGRESS_STATES, UPGRADE_STATE_LABEL } from "../core/upgrade.ts";

export const FIELD_MANAGER = "gpuop";
const KEY = "cluster";


/**
 * Keeps one driver DaemonSet per pool (OS tag, or kernel and OS tag when
 * precompiled) in step with the active ClusterPolicy and the GPU nodes.
 * Everything is reconciled under one queue key: every decision depends on the
 * policy and all GPU nodes together, and the queue folds bursts of events
 * into one pass.
 */
export class DriverController {
  readonly policies: Informer<ClusterPolicy & { metadata: { name: string } }>;
  readonly nodes: Informer<Node>;
  readonly daemonSets: Informer<DaemonSet>;
  readonly pods: Informer<Pod>;
  /** The operand pods (shared with the operand controller): the upgrade's validation and restart read them. */
  readonly operandPods: Informer<Pod>;
  // A pass works out only what changed, and looks only at the nodes the watches changed (node views:
  // driver-memory.ts; the upgrade plan: src/core/upgrade-incremental.ts). Pacing keeps a pass's share of a core under a
  // quarter; the gap keeps passes to two a second, each taking every change since the last, so
  // cheaper passes do not simply become more passes.
  readonly queue = new WorkQueue({ pacing: 3, minGapMs: 500 });
  private readonly client: KubeClient;
  private readonly namespace: string;
  private readonly log: Logger;
  private readonly events: EventRecorder;
  private readonly metrics: OperatorMetrics;
  private serviceAccountReady = false;
  /** Last reported problem per policy, so an Event is recorded once per transition. */
  private readonly lastProblem = new Map<string, string>();
  private readonly lastWarning = new Map<string, string>();
  /** status.operands is the operand controller's to write (merge patches leave it alone). */
  private readonly statusWrites: StatusWrites<ClusterPolicyStatus>;

  private readonly images: ImageChecker | undefined;
  private readonly gpuNodeLabel: RestrictedNodeLabel | undefined;
  /** Used where the policy names no spec.driver.version (--default-driver-version). */
  private readonly defaultDriverVersion: string | undefined;
  /** GPU nodes beyond NFD's and the clouds' labels (--gpu-node-selector). */
  private readonly gpuNodeOptions: GpuNodeOptions;
  private readonly upgrades: UpgradeExecutor;
  /** When the oldest event not yet reconciled arrived (for the event-to-writes latency metric). */
  private pendingSince: number | undefined;

  private readonly fallback: ConventionalFallback;

  /** What passes keep from one to the next, and what the watches index for them (src/controller/driver-memory.ts). */
  private readonly memory: DriverMemory;
  /** Per driver DaemonSet, the desired object last found applied (see AppliedDaemonSet). */
  private readonly appliedDaemonSets = new Map<string, AppliedDaemonSet>();
  /** The policy's spec key (policySpecKey) and its normalized form: most passes follow nodes and pods, and the policy's status. */
  private normalized: { key: string; policy: ReturnType<typeof normalizePolicy> } | undefined;

  constructor(opts: { client: KubeClient; namespace: string; log: Logger; events: EventRecorder; metrics: OperatorMetrics; images?: ImageChecker; allowedRepositories?: RepositoryAllowList; gpuNodeLabel?: RestrictedNodeLabel; defaultDriverVersion?: string; gpuNodeSelector?: Record<string, string>; conventionalFallback?: boolean; pullGraceMs?: number; nodes?: Informer<Node>; driverPods?: Informer<Pod>; operandPods?: Informer<Pod> }) {
    this.client = opts.client;
    this.statusWrites = new StatusWrites<ClusterPolicyStatus>(this.client, (st) => { const { operands: _o, ...driver } = st ?? {}; return driver; }, (status) => ({ status }), {
      intervalMs: STATUS_INTERVAL_MS,
      progressing: (st) => st.conditions?.some((c) => c.type === "Ready" && c.reason === "DriverNotReady") === true,
      headline: statusHeadline,
    });
    this.gpuNodeLabel = opts.gpuNodeLabel;
    this.defaultDriverVersion = opts.defaultDriverVersion;
    this.gpuNodeOptions = opts.gpuNodeSelector ? { gpuNodeSelector: opts.gpuNodeSelector } : {};
    this.memory = new DriverMemory({ gpuNodeOptions: this.gpuNodeOptions, allowedRepositories: opts.allowedRepositories });
    this.images = opts.images;
    this.fallback = new ConventionalFallback({ client: opts.client, log: opts.log, images: opts.images, events: opts.events, enabled: opts.conventionalFallback ?? true, pullGraceMs: opts.pullGraceMs ?? DEFAULT_PULL_GRACE_MS });
    this.namespace = opts.namespace;
    this.log = opts.log;
    this.events = opts.events;
    this.metrics = opts.metrics;
    this.upgrades = new UpgradeExecutor({ client: this.client, events: this.events, log: this.log, namespace: this.namespace });
    const ns = this.namespace;
    this.policies = new Informer(this.client, CLUSTER_POLICY_PATH, {}, this.log);
    // Caches keep only the fields gpuop reads (src/kube/transforms.ts lists them).
    this.nodes = opts.nodes ?? nodeInformer(this.client, this.log);
    this.daemonSets = new Informer(this.client, `/apis/apps/v1/namespaces/${ns}/daemonsets`, { labelSelector: `${MANAGED_BY_LABEL}=${MANAGED_BY}` }, this.log, { transform: slimDaemonSet });
    this.pods = opts.driverPods ?? driverPodInformer(this.client, ns, this.log);
    this.operandPods = opts.operandPods ?? operandPodInformer(this.client, ns, this.log);
    const enqueue = () => {
      this.pendingSince ??= performance.now();
      this.queue.add(KEY);
    };
    // Image checks run off the reconcile path; a new answer is a reason to reconcile.
    this.images?.onAnswer(enqueue);
    this.policies.onChange(enqueue);
    this.daemonSets.onChange(enqueue);
    this.pods.onChange((type, pod, old) => {
      this.memory.driverPodChanged(type, pod, old);
      enqueue();
    });
    // An operand pod matters to a node in an upgrade step only (its validator Ready, its operands gone).
    this.operandPods.onChange((type, pod, old) => {
      this.memory.operandPodChanged(type, pod, old);
      const node = pod.spec?.nodeName;
      if (node === undefined || !IN_PROGRESS_STATES.has(this.nodes.get(node)?.metadata.labels?.[UPGRADE_STATE_LABEL] ?? "")) return;
      if (type !== "modified" || !old || podReadyOf(pod) !== podReadyOf(old) || pod.metadata.deletionTimestamp !== old.metadata.deletionTimestamp) enqueue();
    });
    // Heartbeats change a node's resourceVersion every few seconds; only labels and readiness matter here.
    this.nodes.onChange((type, node, old) => {
      this.memory.nodeChanged(type, node, old);
      if (type !== "modified" || !old || labelsMatter(node, old) || readyOf(node) !== readyOf(old)) enqueue();
      // Removing a node's pull-failure mark sends it back to its precompiled driver.
      else if (node.metadata.annotations?.[PULL_FAILED_ANNOTATION] !== old.metadata.annotations?.[PULL_FAILED_ANNOTATION]) enqueue();
    });
  }

  get informers() {
    return [this.policies, this.nodes, this.daemonSets, this.pods, this.operandPods];
  }

  synced(): Promise<void> {
    return cachesSynced(this.informers);
  }

  /** Runs the caches and, once they are synced, the reconcile loop, until the signal aborts. */
  run(signal: AbortSignal): Promise<void> {
    return runController(this.informers, this.queue, KEY, (key) => this.process(key), signal);
  }

  private async process(key: string): Promise<void> {
    const start = process.hrtime.bigint();
    const since = this.pendingSince;
    this.pendingSince = undefined;
    try {
      await this.reconcile();
      if (since !== undefined) this.metrics.latency.observe((performance.now() - since) / 1000);
      this.queue.forget(key);
      this.metrics.reconciles.inc({ result: "success" });
    } catch (err) {
      const retryIn = this.queue.retry(key);
      this.metrics.reconciles.inc({ result: "error" });
      this.metrics.errors.inc();
      this.log.error("reconcile failed; retrying", { error: (err as Error).message, retryInMs: retryIn });
    } finally {
      this.metrics.duration.observe(Number(process.hrtime.bigint() - start) / 1e9);
      this.metrics.queueDepth.set(this.queue.depth);
      for (const [verb, n] of this.client.requestCounts) this.metrics.apiRequests.setTotal({ verb }, n);
    }
  }

  /** One pass: node labels, policy validation, DaemonSets, node moves, pruning, status. */
  async reconcile(): Promise<void> {
    // With an admin-only GPU node label required, other nodes are not GPU nodes to gpuop, whatever labels they set on themselves.
    // Listed only where a pass needs every node (most need only those that changed: refreshViews).
    let all: Node[] | undefined;
    const nodes = () => (all ??= restrictedNodes(this.nodes.list(), this.gpuNodeLabel));
    this.memory.refreshViews((name) => this.servedNode(name), nodes);
    // GPU labels and pool moves of one pass go out together: one patch per node.
    const labels = new NodeLabelBatch();
    for (const [name, due] of this.memory.labelsToSet) labels.set(name, due);

    const stored = this.policies.list();
    const active = selectActivePolicy(stored);
    for (const p of stored) {
      if (p !== active && active) await this.writeStatus(p, ignoredStatus(active.metadata.name, p.metadata.generation, p.status, now()));
    }
    if (!active) {
      // No policy: its DaemonSets are garbage-collected; drop the pool labels that pointed at them.
      // GPU labels wait for a policy, so the install labels each node once, pool included.
      const unpooled = new NodeLabelBatch();
      for (const n of nodes()) {
        if (n.metadata.labels?.[POOL_NODE_LABEL] !== undefined) unpooled.set(n.metadata.name!, { [POOL_NODE_LABEL]: null });
      }
      await this.writeNodeLabels(unpooled);
      return;
    }

    const { gpuNodes, problems } = this.memory.split();
    let policyErrors: { reason: string; message: string }[];
    let policy: ReturnType<typeof normalizePolicy> | undefined;
    let warnings: readonly { reason: string; message: string }[] = [];
    let rendered: ReturnType<typeof renderDriverDaemonSets> | undefined;
    const ownerRef = { apiVersion: CLUSTER_POLICY_API_VERSION, kind: CLUSTER_POLICY_KIND, name: active.metadata.name, uid: active.metadata.uid ?? "" };
    try {
      const key = policySpecKey(active);
      if (this.normalized?.key !== key) this.normalized = { key, policy: normalizePolicy(withDefaultDriverVersion(active, this.defaultDriverVersion)) };
      const normalized = this.normalized.policy;
      policy = normalized;
      // The facts, not the nodes: validation and rendering then classify nothing again.
      const checks = this.memory.fleetChecks(normalized, gpuNodes, () =>
        normalized.spec.driver.enabled !== false
          ? renderDriverDaemonSets({
              policy: normalized,
              nodes: gpuNodes,
              gpuNodeOptions: this.gpuNodeOptions,
              namespace: this.namespace,
              ownerRef,
              ...(this.gpuNodeLabel ? { requiredNodeLabels: { [this.gpuNodeLabel.key]: this.gpuNodeLabel.value } } : {}),
            })
          : { daemonSets: [], pools: [], problems: [] },
      );
      policyErrors = [...checks.validation.errors];
      warnings = checks.validation.warnings;
      rendered = checks.rendered;
    } catch (err) {
      if (!(err instanceof UserError)) throw err;
      policyErrors = [{ reason: "InvalidPolicy", message: err.message }];
    }
    const fleet = fleetCounts(gpuNodes);
    this.metrics.nodes.replace(nodeStateSeries(fleet, problems.length));

    if (policyErrors.length > 0 || !policy || !rendered) {
      await this.writeNodeLabels(labels);
      await this.reportWarnings(active, warnings);
      // Never take a working driver away because of a bad policy: leave every DaemonSet and node as it is.
      await this.reportProblem(active, policyErrors.map((e) => e.message).join("; "), policyErrors[0]?.reason ?? "InvalidPolicy");
      await this.writeStatus(active, computeStatus({ generation: active.metadata.generation, namespace: this.namespace, policyErrors, nodeProblems: problems, pools: [], daemonSets: new Map(), waiting: [], gpuNodes: gpuNodes.length }, active.status, now()));
      return;
    }

    // A pool whose image the registry lacks gets no DaemonSet; its nodes (and those whose precompiled
    // image cannot be pulled) go to the conventional fallback, or, without one, keep their pool while it still selects them.
    // A pool whose image the registry has not answered for yet holds its nodes and DaemonSet, without a warning.
    const { missing, unchecked, pending, digests } = await this.checkImages(rendered.pools, gpuNodes, policy.spec.driver.imagePullSecrets ?? []);
    const fallback = await this.fallback.plan({ active, policy, get nodes() { return nodes(); }, gpuNodes, pools: rendered.pools, missing, pods: () => this.pods.list(), daemonSets: () => this.daemonSets.list(), namespace: this.namespace, ownerRef, quiet: this.memory.fallbackQuiet });
    await this.reportWarnings(active, [...warnings, ...fallback.warnings, ...unchecked.map((u) => ({ reason: "ImageCheckFailed", message: `could not check driver image ${u.image}, rolled out without the check: ${u.reason}` }))]);
    if ((missing.size > 0 || fallback.diverted.size > 0) && this.images) this.queue.addAfter(KEY, this.images.recheckMs);
    else if (digests.size > 0 && this.images) this.queue.addAfter(KEY, this.images.refreshMs);
    if (fallback.requeueMs !== undefined) this.queue.addAfter(KEY, fallback.requeueMs);
    const pools = poolsWithFallback(rendered.pools.filter((p) => !pending.has(p.name)), missing, fallback.diverted, fallback.pools);
    // Pinned to the digest the registry serves now: one pool, one set of bits; a republished tag rolls.
    const pinned = (d: DriverDaemonSet) => (digests.has(d.metadata.name!) ? pinDriverDigest(d, digests.get(d.metadata.name!)!) : d);
    const toApply = [...rendered.daemonSets.filter((d) => pools.some((p) => p.name === d.metadata.name)).map(pinned), ...fallback.daemonSets];

    // Each DaemonSet runs only on nodes labelled with its pool (set by the UpgradeExecutor), so pools change a few nodes at a time.
    if (toApply.length > 0) await this.ensureDriverServiceAccount();
    for (const ds of toApply) await this.applyDaemonSet(ds);

    // Pool moves and in-place upgrades: one state machine per node, one budget (src/core/upgrade.ts).
    const held = [...pending.values()].flatMap((m) => m.nodes);
    const upgrade = await this.upgrades.reconcile({
      // Read only when the pass looks at every node (UpgradeInputs.changed).
      get nodes() {
        return nodes();
      },
      pools,
      hold: new Set([...fallback.none, ...held]),
      daemonSets: this.daemonSets.list(),
      driverPods: this.memory.driverPods,
      operandPods: this.memory.operandPods,
      upgradePolicy: policy.spec.driver.upgradePolicy,
      deployableNodes: fleet.deployable,
      // GPU labels due this pass go out in the same patch as a pool move or upgrade step.
      labels,
      // Taken now, after this pass's other awaits: a change that arrives later is the next pass's.
      changed: { names: this.memory.takeChangedNodes(), node: (name) => this.servedNode(name) },
    });
    await this.writeNodeLabels(labels);
    if (upgrade.requeueMs !== undefined) this.queue.addAfter(KEY, upgrade.requeueMs);
    this.metrics.upgradeStates.replace(upgradeStateSeries(upgrade));
    const waiting = upgrade.waiting;
    // A pool still waiting for its image answer keeps any DaemonSet it already has.
    await this.prune(new Set([...toApply.map((d) => d.metadata.name), ...pending.keys()]));

    const dsStatus = new Map(this.daemonSets.list().map((d) => [d.metadata.name!, { desired: d.status?.desiredNumberScheduled ?? 0, ready: d.status?.numberReady ?? 0 }]));
    const status = computeStatus(
      {
        generation: active.metadata.generation,
        namespace: this.namespace,
        policyErrors: [],
        nodeProblems: problems,
        pools: pools.map((p) => ({ name: p.name, ...(p.kernel ? { kernel: p.kernel } : {}), osTag: p.osTag, image: digests.has(p.name) ? `${p.image}@${digests.get(p.name)}` : p.image, precompiled: p.precompiled, nodes: p.nodes.length, nodeNames: p.nodes })),
        daemonSets: dsStatus,
        waiting,
        gpuNodes: gpuNodes.length,
        missingImages: [...missing.values()],
        drivers: fallback.summary,
        upgrades: { counts: upgrade.counts, pending: upgrade.waiting, failed: upgrade.failed, outdated: upgrade.outdated },
      },
      active.status,
      now(),
    );
    this.metrics.pools.replace([
      { labels: { mode: "precompiled" }, value: pools.filter((p) => p.precompiled).length },
      { labels: { mode: "conventional" }, value: pools.filter((p) => !p.precompiled).length },
    ]);
    this.metrics.nodeDrivers.replace(driverModeSeries(fallback.plans));
    const { noDriver, keeping, fallback: onFallback } = fallback.summary;
    if (problems.length > 0) await this.reportProblem(active, problems.map((p) => p.problem).join("; "), "NFDLabelsMissing");
    else if (noDriver) await this.reportProblem(active, [noDriver, keeping, onFallback].filter(Boolean).join("; "), "NoDriver");
    else if (keeping) await this.reportProblem(active, [keeping, onFallback].filter(Boolean).join("; "), "PrecompiledImageMissing");
    else if (onFallback) await this.reportProblem(active, onFallback, "ConventionalFallback");
    else await this.reportProblem(active, "", "");
    await this.writeStatus(active, status);
  }

  /** A node as the cache has it now, if gpuop may serve it (see restrictedNodes). */
  private servedNode(name: string): Node | undefined {
    const node = this.nodes.get(name);
    return node && restrictedNodes([node], this.gpuNodeLabel).length > 0 ? node : undefined;
  }

  private async writeNodeLabels(labels: NodeLabelBatch): Promise<void> {
    await labels.flush(this.client, (node, patch) => this.log.info("labelled node", { node, labels: patch }));
  }

  /** Driver pods run as this ServiceAccount; without it the DaemonSets can create no pod. */
  private async ensureDriverServiceAccount(): Promise<void> {
    if (this.serviceAccountReady) return;
    const path = `/api/v1/namespaces/${this.namespace}/serviceaccounts`;
    try {
      await this.client.get(`${path}/${DRIVER_SERVICE_ACCOUNT}`);
    } catch (err) {
      if (!isNotFound(err)) throw err;
      try {
        await this.client.create(path, { metadata: { name: DRIVER_SERVICE_ACCOUNT, labels: { [MANAGED_BY_LABEL]: MANAGED_BY } } });
        this.log.info("created the driver ServiceAccount", { serviceAccount: DRIVER_SERVICE_ACCOUNT });
      } catch (e) {
        if (isConflict(e)) return;
        // Installed by the Helm chart, the operator may not create it: say so, and keep serving.
        if ((e as { status?: number }).status !== 403) throw e;
        this.log.warn("the driver ServiceAccount is missing and may not be created; driver pods cannot start until it exists", { serviceAccount: `${this.namespace}/${DRIVER_SERVICE_ACCOUNT}` });
        return;
      }
    }
    this.serviceAccountReady = true;
  }

  private async applyDaemonSet(desired: DriverDaemonSet): Promise<void> {
    const name = desired.metadata.name!;
    const live = this.daemonSets.get(`${this.namespace}/${name}`);
    if (live && this.appliedDaemonSets.get(name)?.matches(desired, live)) return;
    if (live && isSubset({ metadata: { labels: desired.metadata.labels, ownerReferences: desired.metadata.ownerReferences }, spec: desired.spec }, live)) {
      this.appliedDaemonSets.set(name, new AppliedDaemonSet(desired, live));
      return;
    }
    await this.client.apply(`/apis/apps/v1/namespaces/${this.namespace}/daemonsets/${name}`, desired, FIELD_MANAGER, { force: true });
    this.log.info(live ? "updated driver DaemonSet" : "created driver DaemonSet", { daemonSet: name });
  }

  /** Pools whose image the registry says does not exist (with the nodes that would have used them), and images it could not check. */
  private async checkImages(pools: { name: string; image: string; nodes: string[] }[], gpuNodes: GpuNodeFacts[], pullSecrets: string[]) {
    const missing = new Map<string, { image: string; nodes: string[] }>();
    const unchecked: { image: string; reason: string }[] = [];
    const pending = new Map<string, { image: string; nodes: string[] }>();
    const digests = new Map<string, string>();
    if (!this.images) return { missing, unchecked, pending, digests };
    const archOf = fleetCounts(gpuNodes).archOf;
    for (const pool of pools) {
      const arches = poolArches(pool.nodes, archOf);
      const answer = await this.images.availability(pool.image, arches, this.namespace, pullSecrets);
      if (answer.result === "missing") missing.set(pool.name, { image: pool.image, nodes: pool.nodes });
      else if (answer.pending) pending.set(pool.name, { image: pool.image, nodes: pool.nodes });
      else if (answer.result === "unknown") unchecked.push({ image: pool.image, reason: answer.reason ?? "unknown" });
      else if (answer.digest) digests.set(pool.name, answer.digest);
    }
    return { missing, unchecked, pending, digests };
  }

  /** Deletes DaemonSets no longer desired once no node is assigned to them. */
  private async prune(desired: Set<string>): Promise<void> {
    const candidates = this.daemonSets.list().filter((ds) => !desired.has(ds.metadata.name!) && !ds.metadata.deletionTimestamp);
    for (const ds of candidates) {
      const name = ds.metadata.name!;
      if (this.memory.poolAssigned(name)) continue;
      try {
        await this.client.delete(`/apis/apps/v1/namespaces/${this.namespace}/daemonsets/${name}`, { query: { propagationPolicy: "Background" } });
        this.log.info("deleted driver DaemonSet no longer needed", { daemonSet: name });
      } catch (err) {
        if (!isNotFound(err)) throw err;
      }
    }
  }

  private async reportProblem(policy: ClusterPolicy, message: string, reason: string): Promise<void> {
    const name = policy.metadata.name;
    if ((this.lastProblem.get(name) ?? "") === message) return;
    this.lastProblem.set(name, message);
    const obj = { apiVersion: CLUSTER_POLICY_API_VERSION, kind: CLUSTER_POLICY_KIND, metadata: { ...policy.metadata, name } };
    if (message) {
      this.log.warn("policy problem", { policy: name, reason, message });
      await this.events.record(obj, "Warning", reason, message);
    }
  }

  /** Warnings (a policy that works but is probably not what was meant) become one Warning Event each time they change. */
  private async reportWarnings(policy: ClusterPolicy, warnings: readonly { reason: string; message: string }[]): Promise<void> {
    const key = `${policy.metadata.name}/${policy.metadata.uid ?? ""}`;
    const text = warnings.map((w) => w.message).join("; ");
    if ((this.lastWarning.get(key) ?? "") === text) return;
    this.lastWarning.set(key, text);
    const obj = { apiVersion: CLUSTER_POLICY_API_VERSION, kind: CLUSTER_POLICY_KIND, metadata: { ...policy.metadata } };
    for (const w of warnings) {
      this.log.warn("policy warning", { policy: policy.metadata.name, reason: w.reason, message: w.message });
      await this.events.record(obj, "Warning", w.reason, w.message);
    }
  }

  private async writeStatus(policy: ClusterPolicy, status: ClusterPolicyStatus): Promise<void> {
    const later = await this.statusWrites.write(policy, status);
    // Put off (only counts moved): a pass then writes what is true by that time.
    if (later !== undefined) this.queue.addAfter(KEY, later);
  }
}

/**
 * During a rollout the status's counts change with every driver pod that becomes Ready; written
 * each time, they were a fifth of all writes in a switch. Such changes are written at most
 * this often; a change of what the status says (state, a condition, the pools) at once.
 */
const STATUS_INTERVAL_MS = 10_000;

/** What must not lag in the driver's status: all but the counts and node lists of a rollout in progress (see StatusCoalescing). */
function statusHeadline(st: ClusterPolicyStatus | undefined): string {
  return canonicalJson({
    state: st?.state,
    namespace: st?.namespace,
    observedGeneration: st?.observedGeneration,
    // "DriverNotReady" says how far the rollout is: the counts in its message move on every pod.
    conditions: st?.conditions?.map((c) => ({ type: c.type, status: c.status, reason: c.reason, observedGeneration: c.observedGeneration, ...(c.reason === "DriverNotReady" ? {} : { message: c.message }) })),
    pools: st?.pools?.map((p) => ({ name: p.name, image: p.image, nodes: p.nodes })),
    failed: st?.upgrades?.failed,
  });
}

/** The architectures of a pool's nodes, once per node list (rendering keeps it while no node's facts change). */
const POOL_ARCHES = new WeakMap<readonly string[], { archOf: ReadonlyMap<string, string>; arches: string[] }>();
function poolArches(nodes: readonly string[], archOf: ReadonlyMap<string, string>): string[] {
  const kept = POOL_ARCHES.get(nodes);
  if (kept?.archOf === archOf) return kept.arches;
  const arches = [...new Set(nodes.map((n) => archOf.get(n) ?? "").filter(Boolean))];
  POOL_ARCHES.set(nodes, { archOf, arches });
  return arches;
}

const podReadyOf = (p: Pod) => p.status?.conditions?.find((c) => c.type === "Ready")?.status;
const readyOf = (n: Node) => n.status?.conditions?.find((c) => c.type === "Ready")?.status;
const now = () => new Date().toISOString().replace(/\.\d+Z$/, "Z");

function upgradeStateSeries(plan: UpgradeOutcome) {
  return Object.entries(plan.counts).map(([state, value]) => ({ labels: { state }, value }));
}

function nodeStateSeries(fleet: FleetCounts, problems: number) {
  return [
    { labels: { state: "deployable" }, value: fleet.deployable },
    { labels: { state: "excluded" }, value: fleet.total - fleet.deployable },
    { labels: { state: "notReady" }, value: fleet.notReady },
    { labels: { state: "missingLabels" }, value: problems },
  ];
}
