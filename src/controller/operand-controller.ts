import { canonicalJson, isSubset, sameStringMap } from "../core/diff.ts";
import { classifyGpuNode, isGpuNode, isNodeProblem } from "../core/gpu-node.ts";
import { StatusWrites } from "./status-writes.ts";
import { restrictedNodes, type RestrictedNodeLabel } from "../core/security.ts";
import { UserError } from "../core/errors.ts";
import { CLUSTER_POLICY_API_VERSION, CLUSTER_POLICY_KIND, CLUSTER_POLICY_PATH, normalizePolicy, policySpecKey, selectActivePolicy, type ClusterPolicy, type NormalizedClusterPolicy } from "../core/policy.ts";
import {
  OPERAND_LABEL,
  OPERANDS,
  emptyPatch,
  gateLabel,
  operandNodePatch,
  operandPods,
  operandStatusesFromSplit,
  nodeOperandStates,
  OperandTally,
  renderOperands,
  OPERANDS_DRIVER_ANNOTATION,
  operandNodeSeriesFromSplit,
  type OperandNodeStates,
  operandTransitions,
  type NodePatch,
  type OperandKey,
  type OperandRenderResult,
  type OperandStatus,
} from "../core/operands/index.ts";
import { isConflict, isNotFound, type KubeClient } from "../kube/client.ts";
import type { EventRecorder } from "../kube/events.ts";
import { Informer, type ChangeType } from "../kube/informer.ts";
import { PodsByNode } from "../kube/pods-by-node.ts";
import { slimDaemonSet } from "../kube/transforms.ts";
import type { Logger } from "../kube/log.ts";
import type { DaemonSet, KubeObject, Node, Pod } from "../kube/types.ts";
import { FIELD_MANAGER } from "./driver-controller.ts";
import { WorkQueue } from "./workqueue.ts";
import { cachesSynced, runController } from "./controller-loop.ts";
import { driverPodInformer, nodeInformer, operandPodInformer } from "./shared-caches.ts";
import { mapLimit } from "../registry/pool.ts";
import type { OperatorMetrics } from "./metrics.ts";

const KEY = "operands";
const NODE_PATCH_CONCURRENCY = 16;
const RUNTIME_CLASS_PATH = "/apis/node.k8s.io/v1/runtimeclasses";

/**
 * Deploys NVIDIA's operands besides the driver (toolkit, device plugin, GFD, DCGM exporter,
 * validator) and opens each node to an operand only once its prerequisite is Ready there
 * (docs/adr/0006). Beside the driver controller, with its own caches and queue key; it writes
 * only `status.operands` of the policy, nodes' operand labels and its own objects.
 */
export class OperandController {
  readonly policies: Informer<ClusterPolicy & { metadata: { name: string } }>;
  readonly nodes: Informer<Node>;
  readonly daemonSets: Informer<DaemonSet>;
  readonly services: Informer<KubeObject & { spec?: unknown }>;
  /** The operands' pods (not the driver's). */
  readonly pods: Informer<Pod>;
  /** The driver's pods: the driver controller's cache where the two run together (one watch, one copy). */
  readonly driverPods: Informer<Pod>;
  // As the driver controller's: a pass costs CPU in proportion to the nodes (see WorkQueue's pacing).
  // Passes follow pod events and each is cheap, but a rollout brings thousands of events: at most
  // ten passes a second, each taking the nodes whose pods changed meanwhile.
  readonly queue = new WorkQueue({ pacing: 3, minGapMs: 100 });
  private readonly client: KubeClient;
  private readonly namespace: string;
  private readonly log: Logger;
  private readonly serviceAccounts = new Set<string>();
  private runtimeClassDone = "";
  private readonly events: EventRecorder | undefined;
  /** The last operand problem reported per policy, so an Event is recorded once per change. */
  private lastProblem = "";
  /** Only status.operands: the driver controller writes the rest. */
  private readonly statusWrites: StatusWrites<OperandStatus[]>;

  /** The admin-only GPU node label (--gpu-node-label): other nodes get no operand, as they get no driver. */
  private readonly gpuNodeLabel: RestrictedNodeLabel | undefined;

  private readonly metrics: OperatorMetrics | undefined;
  /** The driver and operand pods on each node, kept up to date by the pod watches. */
  private readonly podsByNode = new PodsByNode();
  /**
   * What a pass worked out for each node (its patch and its operand states), with the node object,
   * the version of the node's pods and the operands turned on it came from. A pass looks only at
   * the nodes that changed since the last (`dirty`: the node or one of its pods) and those with a
   * patch still due, so its cost follows the changes, not the cluster; the tally keeps the counts
   * of the whole cluster for the status. Every node is looked at again when the operands turned
   * on change, after a pass without a policy, and on the first pass.
   */
  private readonly views = new Map<string, OperandNodeView>();
  private readonly tally = new OperandTally();
  private readonly dirty = new Set<string>();
  private everyNode = true;
  private viewsFor = "";
  /** Nodes whose last view had a patch: looked at again until the patch shows in the cache. */
  private readonly patchDue = new Set<string>();
  /** The patch last written to each node, with the node's resourceVersion then: not written again until the node changes. */
  private readonly written = new Map<string, string>();
  /** The containers' runtimes and whether any GPU node exists, from all nodes: worked out again when a node comes, goes or changes them. */
  private clusterFacts: { runtimeVersions: string[]; anyGpuNode: boolean } | undefined;
  /** The last rendering, and the policy object and cluster facts it came from (the informer replaces a policy's object on every change). */
  private lastRender: { policy: string; normalized: NormalizedClusterPolicy; facts: NonNullable<OperandController["clusterFacts"]>; driverEnabled: boolean; result: OperandRenderResult } | undefined;
  /** The last status.operands computed, by policy uid: Events go out when an operand's state changes. */
  private lastStatuses: { uid: string; operands: OperandStatus[] } | undefined;

  constructor(opts: { client: KubeClient; namespace: string; log: Logger; events?: EventRecorder; gpuNodeLabel?: RestrictedNodeLabel; nodes?: Informer<Node>; driverPods?: Informer<Pod>; operandPods?: Informer<Pod>; metrics?: OperatorMetrics }) {
    this.client = opts.client;
    this.metrics = opts.metrics;
    // Pod counts move with every pod that becomes Ready: written every 10 s at most, states at once.
    this.statusWrites = new StatusWrites<OperandStatus[]>(this.client, (st) => st?.operands ?? [], (operands) => ({ status: { operands } }), {
      intervalMs: 10_000,
      progressing: (ops) => ops.some((o) => o.state === "notReady"),
      headline: (ops) => canonicalJson((ops ?? []).map((o) => ({ name: o.name, daemonSet: o.daemonSet, state: o.state, nodes: o.nodes, message: o.message }))),
    });
    this.gpuNodeLabel = opts.gpuNodeLabel;
    this.events = opts.events;
    this.namespace = opts.namespace;
    this.log = opts.log;
    const ns = this.namespace;
    this.policies = new Informer(this.client, CLUSTER_POLICY_PATH, {}, this.log);
    // Caches keep only the fields gpuop reads (src/kube/transforms.ts lists them).
    this.nodes = opts.nodes ?? nodeInformer(this.client, this.log);
    this.daemonSets = new Informer(this.client, `/apis/apps/v1/namespaces/${ns}/daemonsets`, { labelSelector: OPERAND_LABEL }, this.log, { transform: slimDaemonSet });
    this.services = new Informer(this.client, `/api/v1/namespaces/${ns}/services`, { labelSelector: OPERAND_LABEL }, this.log);
    this.pods = opts.operandPods ?? operandPodInformer(this.client, ns, this.log);
    this.driverPods = opts.driverPods ?? driverPodInformer(this.client, ns, this.log);
    const enqueue = () => this.queue.add(KEY);
    this.policies.onChange(enqueue);
    this.daemonSets.onChange(enqueue);
    this.services.onChange(enqueue);
    // Only pod readiness and placement matter; status heartbeats of other fields do not.
    const onPod = (type: ChangeType, pod: Pod, old?: Pod) => {
      this.podsByNode.update(type, pod, old);
      if (pod.spec?.nodeName) this.dirty.add(pod.spec.nodeName);
      if (old?.spec?.nodeName) this.dirty.add(old.spec.nodeName);
      if (type !== "modified" || !old || podReady(pod) !== podReady(old) || pod.spec?.nodeName !== old.spec?.nodeName || pod.metadata.deletionTimestamp !== old.metadata.deletionTimestamp) enqueue();
    };
    this.pods.onChange(onPod);
    this.driverPods.onChange(onPod);
    this.nodes.onChange((type, node, old) => {
      this.dirty.add(node.metadata.name ?? "");
      const labelsChanged = type !== "modified" || !old || !sameStringMap(node.metadata.labels, old.metadata.labels);
      if (clusterFactsChanged(type, node, old, this.gpuNodeLabel)) this.clusterFacts = undefined;
      if (labelsChanged) enqueue();
    });
  }

  get informers() {
    return [this.policies, this.nodes, this.daemonSets, this.services, this.pods, this.driverPods];
  }

  synced(): Promise<void> {
    return cachesSynced(this.informers);
  }

  run(signal: AbortSignal): Promise<void> {
    return runController(this.informers, this.queue, KEY, (key) => this.process(key), signal);
  }

  private async process(key: string): Promise<void> {
    const start = process.hrtime.bigint();
    try {
      await this.reconcile();
      this.queue.forget(key);
    } catch (err) {
      const retryIn = this.queue.retry(key);
      this.log.error("operand reconcile failed; retrying", { error: (err as Error).message, retryInMs: retryIn });
    } finally {
      this.metrics?.operandDuration.observe(Number(process.hrtime.bigint() - start) / 1e9);
    }
  }

  /** One pass: render, apply or remove objects, open node gates, status. */
  async reconcile(): Promise<void> {
    const active = selectActivePolicy(this.policies.list());
    if (!active) {
      const nodes = restrictedNodes(this.nodes.list(), this.gpuNodeLabel);
      // Checked again for the next policy: someone may have deleted them meanwhile.
      this.runtimeClassDone = "";
      this.serviceAccounts.clear();
      this.everyNode = true;
      // The DaemonSets go with the policy (owner references); the gates go too, so a new policy starts in order.
      for (const node of nodes) await this.patchNode(node, { labels: Object.fromEntries(OPERANDS.filter((o) => node.metadata.labels?.[gateLabel(o)] !== undefined).map((o) => [gateLabel(o), null])), annotations: {} });
      return;
    }
    let rendered: OperandRenderResult;
    let driverEnabled: boolean;
    try {
      const facts = this.facts();
      // Rendered again only when the policy or the nodes' runtimes change (most passes follow pods).
      // Keyed on the spec, not the object: this controller's own status writes change the object.
      const key = policySpecKey(active);
      if (this.lastRender?.policy !== key || this.lastRender.facts !== facts) {
        const normalized = this.lastRender?.policy === key ? this.lastRender.normalized : normalizePolicy(active);
        this.lastRender = {
          policy: key,
          normalized,
          facts,
          driverEnabled: normalized.spec.driver.enabled !== false,
          result: renderOperands({
            policy: normalized,
            namespace: this.namespace,
            owner: { apiVersion: CLUSTER_POLICY_API_VERSION, kind: CLUSTER_POLICY_KIND, name: active.metadata.name, uid: active.metadata.uid ?? "" },
            runtimeVersions: facts.runtimeVersions,
          }),
        };
      }
      driverEnabled = this.lastRender.driverEnabled;
      rendered = this.lastRender.result;
    } catch (err) {
      if (!(err instanceof UserError)) throw err;
      // A bad policy changes nothing that runs: only the status and an Event say what to fix.
      // The gates of the operands that run keep following driver changes (an upgrade waits for them).
      await this.reportProblem(active, err.message);
      const live = new Set(this.daemonSets.list().map((d) => d.metadata.labels?.[OPERAND_LABEL] as OperandKey | undefined).filter((k): k is OperandKey => k !== undefined));
      let driverOn = true;
      try {
        driverOn = normalizePolicy(active).spec.driver.enabled !== false;
      } catch {
        // The driver part is the driver controller's to report; its gates act as if it runs.
      }
      await this.labelNodes(live, driverOn);
      await this.writeStatus(active, operandStatusesFromSplit(active, [], err.message));
      return;
    }
    await this.reportProblem(active, "");
    // As NVIDIA's operator: no operand DaemonSet while the cluster has no GPU node.
    if (!this.facts().anyGpuNode) rendered = { ...rendered, daemonSets: [], services: [] };

    if (rendered.daemonSets.some((d) => d.spec.template.spec.runtimeClassName)) await this.ensureRuntimeClass(rendered.daemonSets.find((d) => d.spec.template.spec.runtimeClassName)!.spec.template.spec.runtimeClassName!);
    for (const ds of rendered.daemonSets) {
      await this.ensureServiceAccount(ds.spec.template.spec.serviceAccountName);
      await this.apply(`/apis/apps/v1/namespaces/${this.namespace}/daemonsets`, this.daemonSets, ds);
    }
    for (const svc of rendered.services) await this.apply(`/api/v1/namespaces/${this.namespace}/services`, this.services, svc);
    await this.removeDisabled(new Set(rendered.disabled));

    const enabled = new Set<OperandKey>(rendered.enabled);
    await this.labelNodes(enabled, driverEnabled);
    const split = this.tally.split(enabled);
    // The policy as normalized for this render: the status is worked out on every pass.
    const statuses = operandStatusesFromSplit(this.lastRender!.normalized, split);
    this.metrics?.operandNodes.replace(operandNodeSeriesFromSplit(split));
    await this.reportTransitions(active, statuses);
    await this.writeStatus(active, statuses);
  }

  /** Events on the policy when an operand becomes ready or stops being ready (not on the first pass after a start). */
  private async reportTransitions(policy: ClusterPolicy, statuses: OperandStatus[]): Promise<void> {
    const uid = policy.metadata.uid ?? "";
    const before = this.lastStatuses?.uid === uid ? this.lastStatuses.operands : undefined;
    this.lastStatuses = { uid, operands: statuses };
    if (!this.events) return;
    for (const e of operandTransitions(before, statuses)) {
      await this.events.record({ apiVersion: CLUSTER_POLICY_API_VERSION, kind: CLUSTER_POLICY_KIND, metadata: { ...policy.metadata } }, e.type, e.reason, e.message);
    }
  }

  /** Deploy labels, gates in NVIDIA's order, gates closed for a driver change: one patch per node that changes. */
  private async labelNodes(enabled: ReadonlySet<OperandKey>, driverEnabled: boolean): Promise<void> {
    const operands = `${[...enabled].sort().join(",")}|${driverEnabled}`;
    let names: Iterable<string>;
    if (this.everyNode || operands !== this.viewsFor) {
      names = new Set([...this.nodes.list().map((n) => n.metadata.name ?? ""), ...this.views.keys()]);
      this.everyNode = false;
      this.viewsFor = operands;
    } else names = new Set([...this.dirty, ...this.patchDue]);
    this.dirty.clear();
    const due: { node: Node; patch: NodePatch; stamp: string }[] = [];
    for (const name of names) {
      const node = this.nodes.get(name);
      if (!node || (this.gpuNodeLabel && node.metadata.labels?.[this.gpuNodeLabel.key] !== this.gpuNodeLabel.value)) {
        // Gone, or not a GPU node to gpuop (--gpu-node-label): it counts nowhere and gets nothing.
        this.views.delete(name);
        this.tally.set(name, undefined);
        this.patchDue.delete(name);
        this.written.delete(name);
        continue;
      }
      const view = this.nodeView(node, enabled, driverEnabled, operands);
      this.views.set(name, view);
      this.tally.set(name, view.servable ? view.states : undefined);
      if (emptyPatch(view.patch)) {
        this.patchDue.delete(name);
        this.written.delete(name);
        continue;
      }
      this.patchDue.add(name);
      // Written already and the watch has not shown it yet: writing it again changes nothing.
      const stamp = `${node.metadata.resourceVersion ?? ""} ${canonicalJson(view.patch)}`;
      if (this.written.get(name) !== stamp) due.push({ node, patch: view.patch, stamp });
    }
    // A few at a time, as the driver controller's node patches: a driver upgrade of many nodes closes many gates at once.
    await mapLimit(due, NODE_PATCH_CONCURRENCY, async ({ node, patch, stamp }) => {
      await this.patchNode(node, patch);
      this.written.set(node.metadata.name ?? "", stamp);
    });
  }

  private nodeView(node: Node, enabled: ReadonlySet<OperandKey>, driverEnabled: boolean, operands: string): OperandNodeView {
    const name = node.metadata.name ?? "";
    const podsVersion = this.podsByNode.version(name);
    const kept = this.views.get(name);
    if (kept && kept.node === node && kept.podsVersion === podsVersion && kept.operands === operands) return kept;
    const pods = operandPods(this.podsByNode.on(name));
    // Not gpuNodeFacts: its memo keeps a copy of every node's labels, and this view is the memo here.
    const servable = isGpuNode(node) && !isNodeProblem(classifyGpuNode(node));
    return {
      node,
      podsVersion,
      operands,
      patch: operandNodePatch(node, enabled, driverEnabled, pods),
      servable,
      states: servable ? nodeOperandStates(node.metadata.labels ?? {}, enabled, (key) => pods.ready.get(key)?.has(name) ?? false) : {},
    };
  }

  private facts(): { runtimeVersions: string[]; anyGpuNode: boolean } {
    if (!this.clusterFacts) {
      const nodes = restrictedNodes(this.nodes.list(), this.gpuNodeLabel);
      this.clusterFacts = { runtimeVersions: nodes.map(runtimeOf).filter((v): v is string => Boolean(v)), anyGpuNode: nodes.some((n) => isGpuNode(n)) };
    }
    return this.clusterFacts;
  }

  private async patchNode(node: Node, patch: NodePatch): Promise<void> {
    if (emptyPatch(patch)) return;
    const closed = Object.entries(patch.labels).filter(([k, v]) => v === null && k.startsWith("gpuop.nvidia.com/gate.")).length;
    await this.client.mergePatch(`/api/v1/nodes/${node.metadata.name}`, { metadata: { labels: patch.labels, ...(Object.keys(patch.annotations).length > 0 ? { annotations: patch.annotations } : {}) } }, { discardBody: true });
    this.log.info("labelled node for operands", { node: node.metadata.name, labels: patch.labels, ...(patch.annotations[OPERANDS_DRIVER_ANNOTATION] ? { driverPod: patch.annotations[OPERANDS_DRIVER_ANNOTATION] } : {}), ...(closed > 0 ? { gatesClosed: closed } : {}) });
    if (patch.driverChange && this.events) {
      void this.events.record({ apiVersion: "v1", kind: "Node", metadata: { name: node.metadata.name ?? "", ...(node.metadata.uid ? { uid: node.metadata.uid } : {}) } }, "Normal", "OperandsStopped", `${patch.driverChange}: NVIDIA's operands on this node stop, and come back in order (toolkit, then device plugin, GFD, DCGM exporter, validator) once the new driver is Ready`);
    }
  }

  /** Server-side apply, only when a field gpuop sets differs from what is live: a steady state writes nothing. */
  private async apply(collection: string, cache: { get(key: string): KubeObject | undefined }, desired: { metadata: { name: string; labels: Record<string, string>; annotations: Record<string, string>; ownerReferences?: unknown[] }; spec: unknown }): Promise<void> {
    const name = desired.metadata.name;
    const live = cache.get(`${this.namespace}/${name}`);
    const subject = { metadata: { labels: desired.metadata.labels, annotations: desired.metadata.annotations, ownerReferences: desired.metadata.ownerReferences }, spec: desired.spec };
    if (live && !live.metadata.deletionTimestamp && isSubset(subject, live)) return;
    await this.client.apply(`${collection}/${name}`, desired, FIELD_MANAGER, { force: true });
    this.log.info(live ? "updated operand object" : "created operand object", { name });
  }

  private async removeDisabled(disabled: ReadonlySet<OperandKey>): Promise<void> {
    for (const [cache, collection] of [
      [this.daemonSets, `/apis/apps/v1/namespaces/${this.namespace}/daemonsets`],
      [this.services, `/api/v1/namespaces/${this.namespace}/services`],
    ] as const) {
      for (const obj of cache.list()) {
        const key = obj.metadata.labels?.[OPERAND_LABEL] as OperandKey | undefined;
        if (!key || !disabled.has(key) || obj.metadata.deletionTimestamp) continue;
        try {
          await this.client.delete(`${collection}/${obj.metadata.name}`, { query: { propagationPolicy: "Background" } });
          this.log.info("deleted the objects of a disabled operand", { operand: key, name: obj.metadata.name });
        } catch (err) {
          if (!isNotFound(err)) throw err;
        }
      }
    }
  }

  /** NVIDIA's operand ServiceAccounts; created when missing (403: the chart made them, or must). */
  private async ensureServiceAccount(name: string): Promise<void> {
    if (this.serviceAccounts.has(name)) return;
    const path = `/api/v1/namespaces/${this.namespace}/serviceaccounts`;
    try {
      await this.client.get(`${path}/${name}`);
    } catch (err) {
      if (!isNotFound(err)) throw err;
      try {
        await this.client.create(path, { metadata: { name, labels: { [OPERAND_LABEL]: "serviceaccount" } } });
        this.log.info("created an operand ServiceAccount", { serviceAccount: name });
      } catch (e) {
        if (!isConflict(e)) {
          if ((e as { status?: number }).status !== 403) throw e;
          this.log.warn("an operand ServiceAccount is missing and may not be created; its pods cannot start until it exists", { serviceAccount: `${this.namespace}/${name}` });
          return;
        }
      }
    }
    this.serviceAccounts.add(name);
  }

  /** The RuntimeClass the device plugin, GFD, exporter and validator run with; the toolkit adds its handler to the node's runtime. */
  private async ensureRuntimeClass(name: string): Promise<void> {
    if (this.runtimeClassDone === name) return;
    try {
      await this.client.get(`${RUNTIME_CLASS_PATH}/${name}`);
    } catch (err) {
      if (!isNotFound(err)) throw err;
      await this.client.apply(
        `${RUNTIME_CLASS_PATH}/${name}`,
        {
          apiVersion: "node.k8s.io/v1",
          kind: "RuntimeClass",
          metadata: {
            name,
            // No owner: garbage collection after a policy is deleted would race a new policy's
            // check and leave its pods rejected ("RuntimeClass not found"). It stays, like the CRD.
            labels: { "app.kubernetes.io/component": "gpu-operator", [OPERAND_LABEL]: "runtimeclass" },
          },
          handler: name,
        },
        FIELD_MANAGER,
        { force: true },
      );
      this.log.info("created RuntimeClass", { runtimeClass: name });
    }
    this.runtimeClassDone = name;
  }

  private async reportProblem(policy: ClusterPolicy, message: string): Promise<void> {
    if (message === this.lastProblem) return;
    this.lastProblem = message;
    if (!message || !this.events) return;
    this.log.warn("operand problem", { policy: policy.metadata.name, message });
    await this.events.record({ apiVersion: CLUSTER_POLICY_API_VERSION, kind: CLUSTER_POLICY_KIND, metadata: { ...policy.metadata } }, "Warning", "OperandConfigInvalid", `${message}; the operands keep running as they are`);
  }

  private async writeStatus(policy: ClusterPolicy, operands: OperandStatus[]): Promise<void> {
    const later = await this.statusWrites.write(policy, operands);
    if (later !== undefined) this.queue.addAfter(KEY, later);
  }
}

const podReady = (p: Pod) => p.status?.conditions?.find((c) => c.type === "Ready")?.status;

/**
 * Whether a node change can change the cluster's facts the operands are rendered from (the
 * container runtimes, whether any GPU node is left): a node coming or going, or changing its
 * runtime, its GPU presence or the admin-only GPU node label. Not every label change: worked out
 * again for each, they were a walk over every node and a new rendering on almost every pass of a
 * rollout (upgrade steps and gates are labels).
 */
export function clusterFactsChanged(type: ChangeType, node: Node, old: Node | undefined, gpuNodeLabel: RestrictedNodeLabel | undefined): boolean {
  if (type !== "modified" || !old) return true;
  if (gpuNodeLabel !== undefined && node.metadata.labels?.[gpuNodeLabel.key] !== old.metadata.labels?.[gpuNodeLabel.key]) return true;
  return runtimeOf(node) !== runtimeOf(old) || isGpuNode(node) !== isGpuNode(old);
}

const runtimeOf = (n: Node | undefined) => (n?.status?.nodeInfo as { containerRuntimeVersion?: string } | undefined)?.containerRuntimeVersion;

/** A node as an operand pass sees it (see OperandController.views). */
interface OperandNodeView {
  node: Node;
  /** The version of the node's pods (PodsByNode) and the operands turned on it was worked out for. */
  podsVersion: number;
  operands: string;
  patch: NodePatch;
  /** A GPU node gpuop serves (not one with missing labels): it counts in status.operands. */
  servable: boolean;
  states: OperandNodeStates;
}
