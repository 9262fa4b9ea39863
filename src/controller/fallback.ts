import {
  decideNodeDriver,
  describeDriverPlans,
  fallbackEnabled,
  FALLBACK_REASON_ANNOTATION,
  pullFailure,
  PULL_FAILED_ANNOTATION,
  renderFallbackDaemonSets,
  resolveConventional,
  type ConventionalAnswer,
  type NodeDriverPlan,
} from "../core/fallback.ts";
import type { GpuNodeFacts } from "../core/gpu-node.ts";
import type { ClusterPolicy, NormalizedClusterPolicy } from "../core/policy.ts";
import { DRIVER_CONTAINER, PRECOMPILED_LABEL, type DriverDaemonSet, type Pool, type RenderInput } from "../core/render.ts";
import { poolSelects, POOL_NODE_LABEL, readyDriverKeys } from "../core/rollout.ts";
import type { KubeClient } from "../kube/client.ts";
import type { EventRecorder } from "../kube/events.ts";
import type { Logger } from "../kube/log.ts";
import type { DaemonSet, Node, Pod } from "../kube/types.ts";
import type { ImageChecker } from "./image-check.ts";

export interface FallbackInput {
  active: ClusterPolicy;
  policy: NormalizedClusterPolicy;
  nodes: Node[];
  gpuNodes: GpuNodeFacts[];
  /** The pools the policy renders. */
  pools: Pool[];
  /** Pools whose image the registry lacks. */
  missing: ReadonlyMap<string, { image: string; nodes: string[] }>;
  /** Listed only when the pass needs them (not on the quiet path). */
  pods: () => Pod[];
  daemonSets: () => DaemonSet[];
  namespace: string;
  ownerRef: RenderInput["ownerRef"];
  /**
   * No node carries a pull-failure or fallback annotation and no precompiled driver pod is failing
   * to pull (the controller keeps both from its watches). With no pool missing either, every node
   * simply gets its rendered pool, and the pass need not look at each node and pod.
   */
  quiet?: boolean;
}

export interface FallbackResult {
  /** What each node of a precompiled pool (or a pool with a missing image) gets. */
  plans: NodeDriverPlan[];
  /** The conventional DaemonSets of the nodes on the fallback, and their pools. */
  daemonSets: DriverDaemonSet[];
  pools: Pool[];
  /** Nodes taken out of their rendered pool (fallback or none). */
  diverted: Set<string>;
  /** Nodes with no driver to go to: they stay on their current pool while it still selects them. */
  none: string[];
  /** Status sentences (see describeDriverPlans). */
  summary: { fallback: string; noDriver: string; keeping: string };
  warnings: { reason: string; message: string }[];
  /** Come back then: a pull failure's grace period ends. */
  requeueMs?: number;
}

/**
 * The I/O around core/fallback.ts: which precompiled driver pods cannot pull (recorded on the
 * node, so a restart neither forgets nor restarts the grace period), the conventional image
 * of the branch per OS from the registry, and the node annotations `gpuop status` reads.
 */
export class ConventionalFallback {
  private readonly client: KubeClient;
  private readonly log: Logger;
  private readonly images: ImageChecker | undefined;
  private readonly events: EventRecorder | undefined;
  private readonly enabled: boolean;
  private readonly pullGraceMs: number;

  constructor(opts: { client: KubeClient; log: Logger; images?: ImageChecker | undefined; events?: EventRecorder; enabled: boolean; pullGraceMs: number }) {
    this.client = opts.client;
    this.events = opts.events;
    this.log = opts.log;
    this.images = opts.images;
    this.enabled = opts.enabled;
    this.pullGraceMs = opts.pullGraceMs;
  }

  async plan(input: FallbackInput): Promise<FallbackResult> {
    const driver = input.policy.spec.driver;
    const switchSetting = fallbackEnabled(this.enabled, input.active.metadata.annotations);
    const warnings = switchSetting.warning ? [{ reason: "InvalidAnnotation", message: switchSetting.warning }] : [];
    if (input.quiet && input.missing.size === 0) {
      const plans = driver.usePrecompiled ? precompiledPlans(input.pools) : [];
      return { plans, daemonSets: [], pools: [], diverted: new Set(), none: [], summary: describeDriverPlans([], new Set()), warnings };
    }
    // Each node's annotations as this pass leaves them: the cached ones, but for those it writes.
    const annotations = new NodeAnnotations(input.nodes);
    const requeueMs = driver.usePrecompiled ? await this.recordPullFailures(input.pods(), annotations) : undefined;

    const osOf = new Map(input.gpuNodes.map((n) => [n.name, n]));
    const plans: NodeDriverPlan[] = [];
    const conventional = new Map<string, ConventionalAnswer>();
    for (const pool of input.pools) {
      const missing = input.missing.has(pool.name);
      for (const node of pool.nodes) {
        if (!driver.usePrecompiled) {
          // A conventional policy has nothing to fall back to: a missing image means no new driver.
          if (missing) plans.push({ node, osTag: pool.osTag, mode: "none", precompiledImage: pool.image, cause: "missing", reason: `the registry has no driver image ${pool.image}` });
          continue;
        }
        const pullFailedImage = annotations.of(node)?.[PULL_FAILED_ANNOTATION];
        const facts = { node, osTag: pool.osTag, pool: pool.name, image: pool.image, missing, ...(pullFailedImage ? { pullFailedImage } : {}) };
        let answer: ConventionalAnswer | undefined;
        if ((missing || pullFailedImage === pool.image) && switchSetting.enabled) {
          answer = await this.conventionalFor(input, pool.osTag, osOf.get(node)?.arch ?? "", conventional);
        }
        plans.push(decideNodeDriver(facts, answer, switchSetting.enabled));
      }
    }
    const rendered = renderFallbackDaemonSets({ policy: input.active, nodes: input.nodes, namespace: input.namespace, ownerRef: input.ownerRef }, plans);
    const keeping = this.keeping(plans, input);
    await this.annotateNodes(plans, annotations, keeping);
    return {
      plans,
      daemonSets: rendered.daemonSets,
      pools: rendered.pools,
      diverted: new Set(plans.filter((p) => p.mode !== "precompiled").map((p) => p.node)),
      none: plans.filter((p) => p.mode === "none").map((p) => p.node),
      summary: describeDriverPlans(plans, keeping),
      warnings,
      ...(requeueMs !== undefined ? { requeueMs } : {}),
    };
  }

  /** The conventional image of the policy's branch for an OS tag, checked for the node's architecture. */
  private async conventionalFor(input: FallbackInput, osTag: string, arch: string, cache: Map<string, ConventionalAnswer>): Promise<ConventionalAnswer> {
    const key = `${osTag}/${arch}`;
    const known = cache.get(key);
    if (known) return known;
    const driver = input.policy.spec.driver;
    let answer: ConventionalAnswer;
    if (!this.images) {
      answer = { found: false, reason: "the operator runs without image checks (--no-image-check), so it cannot find the conventional image" };
    } else {
      const repo = (driver.repository ?? "").replace(/\/+$/, "");
      const listed = await this.images.tags(repo === "" ? driver.image : `${repo}/${driver.image}`, input.namespace, driver.imagePullSecrets ?? []);
      answer = resolveConventional(driver, osTag, listed.tags, listed.tags ? undefined : listed.reason);
      if (answer.found) {
        const check = await this.images.availability(answer.image, arch ? [arch] : [], input.namespace, driver.imagePullSecrets ?? []);
        if (check.result === "missing") answer = { found: false, reason: `the conventional image ${answer.image} has no ${arch} image` };
      }
    }
    cache.set(key, answer);
    return answer;
  }

  /**
   * Marks nodes whose precompiled driver pod has failed to pull past the grace period; returns
   * when the next grace period ends. The pod's own status dates the failure.
   */
  private async recordPullFailures(pods: Pod[], annotations: NodeAnnotations): Promise<number | undefined> {
    let next: number | undefined;
    const now = Date.now();
    for (const pod of pods) {
      const node = pod.spec?.nodeName;
      if (!node || pod.metadata.labels?.[PRECOMPILED_LABEL] !== "true" || pod.metadata.deletionTimestamp) continue;
      const failure = pullFailure(pod, DRIVER_CONTAINER, now, this.pullGraceMs);
      if (!failure || failure.image === "") continue;
      if (failure.remainingMs > 0) {
        next = Math.min(next ?? Infinity, failure.remainingMs + 1000);
        continue;
      }
      const current = annotations.of(node);
      if (!current || current[PULL_FAILED_ANNOTATION] === failure.image) continue;
      await this.client.mergePatch(`/api/v1/nodes/${node}`, { metadata: { annotations: { [PULL_FAILED_ANNOTATION]: failure.image } } });
      annotations.written(node, { ...current, [PULL_FAILED_ANNOTATION]: failure.image });
      this.log.warn("precompiled driver image cannot be pulled on the node", { node, image: failure.image, reason: failure.reason, since: failure.since });
    }
    return next;
  }

  /** Nodes without a plan of their own that still run a Ready driver on a DaemonSet that still selects them. */
  private keeping(plans: NodeDriverPlan[], input: FallbackInput): Set<string> {
    const out = new Set<string>();
    if (!plans.some((p) => p.mode === "none")) return out;
    const ready = readyDriverKeys(input.pods());
    const selectors = new Map(input.daemonSets().map((d) => [d.metadata.name ?? "", (d.spec?.template?.spec as { nodeSelector?: Record<string, string> } | undefined)?.nodeSelector]));
    const labels = new Map(input.nodes.map((n) => [n.metadata.name ?? "", n.metadata.labels ?? {}]));
    for (const p of plans) {
      if (p.mode !== "none") continue;
      const nodeLabels = labels.get(p.node) ?? {};
      const pool = nodeLabels[POOL_NODE_LABEL];
      const selector = pool !== undefined ? selectors.get(pool) : undefined;
      if (pool !== undefined && selector && poolSelects(selector, nodeLabels) && ready.has(`${pool}/${p.node}`)) out.add(p.node);
    }
    return out;
  }

  /** Writes why a node is off its precompiled driver (and clears it, and a stale pull failure, once it is back). */
  private async annotateNodes(plans: NodeDriverPlan[], annotations: NodeAnnotations, keeping: ReadonlySet<string>): Promise<void> {
    const planned = new Set(plans.map((p) => p.node));
    // A node no plan speaks of (say, after a switch to conventional mode) is on no fallback: drop an old note.
    for (const node of annotations.names()) {
      if (planned.has(node) || annotations.of(node)?.[FALLBACK_REASON_ANNOTATION] === undefined) continue;
      await this.client.mergePatch(`/api/v1/nodes/${node}`, { metadata: { annotations: { [FALLBACK_REASON_ANNOTATION]: null } } });
    }
    for (const p of plans) {
      const current = annotations.of(p.node);
      if (!current) continue;
      const patch: Record<string, string | null> = {};
      const want = p.mode === "precompiled" ? undefined
        : p.mode === "fallback" ? `fallback to ${p.image}: ${p.reason}`
        : keeping.has(p.node) ? `keeps the driver it runs now: ${p.reason}` : `no driver: ${p.reason}`;
      if ((current[FALLBACK_REASON_ANNOTATION] ?? undefined) !== want) patch[FALLBACK_REASON_ANNOTATION] = want ?? null;
      const failed = current[PULL_FAILED_ANNOTATION];
      if (p.mode === "precompiled" && failed !== undefined && failed !== p.image) patch[PULL_FAILED_ANNOTATION] = null;
      if (Object.keys(patch).length === 0) continue;
      await this.client.mergePatch(`/api/v1/nodes/${p.node}`, { metadata: { annotations: patch } });
      if (FALLBACK_REASON_ANNOTATION in patch) {
        // One Event on the node per change of its driver source, for `kubectl describe node`.
        const uid = annotations.uid(p.node);
        const node = { apiVersion: "v1", kind: "Node", metadata: { name: p.node, ...(uid ? { uid } : {}) } };
        if (p.mode === "fallback") await this.events?.record(node, "Warning", "ConventionalFallback", `runs the conventional driver ${p.image}: ${p.reason}`);
        else if (p.mode === "none") await this.events?.record(node, "Warning", keeping.has(p.node) ? "PrecompiledImageMissing" : "NoDriver", want ?? "");
        else await this.events?.record(node, "Normal", "PrecompiledDriver", `back on the precompiled driver ${p.image}`);
      }
    }
  }
}

/**
 * The nodes' annotations as a pass leaves them: the cached objects' (never written to), and in
 * their place the ones this pass patched. Copying every node's annotations up front, on every
 * pass, cost more than the rest of the fallback's plan at thousands of nodes.
 */
class NodeAnnotations {
  private readonly nodes = new Map<string, Node>();
  private readonly patched = new Map<string, Readonly<Record<string, string>>>();

  constructor(nodes: readonly Node[]) {
    for (const n of nodes) this.nodes.set(n.metadata.name ?? "", n);
  }

  /** undefined for a node not in the cache. */
  of(node: string): Readonly<Record<string, string>> | undefined {
    const patched = this.patched.get(node);
    if (patched) return patched;
    const n = this.nodes.get(node);
    return n ? (n.metadata.annotations ?? {}) : undefined;
  }

  written(node: string, annotations: Readonly<Record<string, string>>): void {
    this.patched.set(node, annotations);
  }

  names(): IterableIterator<string> {
    return this.nodes.keys();
  }

  uid(node: string): string | undefined {
    return this.nodes.get(node)?.metadata.uid;
  }
}

/** Every node of every pool on its precompiled pool: one array per rendering (pools are shared between passes while the fleet is unchanged). */
const PRECOMPILED_PLANS = new WeakMap<readonly Pool[], NodeDriverPlan[]>();
function precompiledPlans(pools: readonly Pool[]): NodeDriverPlan[] {
  let plans = PRECOMPILED_PLANS.get(pools);
  if (!plans) {
    plans = pools.flatMap((pool) => pool.nodes.map((node) => decideNodeDriver({ node, osTag: pool.osTag, pool: pool.name, image: pool.image, missing: false }, undefined, false)));
    PRECOMPILED_PLANS.set(pools, Object.freeze(plans) as NodeDriverPlan[]);
  }
  return plans;
}
