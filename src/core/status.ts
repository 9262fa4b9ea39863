import type { ClusterPolicyStatus, Condition, PoolStatus } from "./policy.ts";
import type { GpuNodeProblem } from "./gpu-node.ts";

/** What the controller observed, reduced to what the status reports. */
export interface StatusInputs {
  generation?: number;
  namespace: string;
  /** Problems with the policy itself; while any exist, no DaemonSet is changed. */
  policyErrors: { reason: string; message: string }[];
  nodeProblems: GpuNodeProblem[];
  pools: (PoolStatus & { nodeNames: string[] })[];
  /** Live DaemonSet status by name. */
  daemonSets: ReadonlyMap<string, { desired: number; ready: number }>;
  /** GPU nodes that wait for others before changing driver. */
  waiting: string[];
  gpuNodes: number;
  /** Driver images the registry lacks, and the nodes that would have used them. */
  missingImages?: { image: string; nodes: string[] }[];
  /**
   * Nodes off their precompiled driver, in sentences (core/fallback.ts describeDriverPlans):
   * on the conventional fallback, with no driver at all, or keeping the driver they run now.
   */
  drivers?: { fallback: string; noDriver: string; keeping: string };
  /** The upgrade plan's view: nodes per upgrade state, waiting for the budget, failed, outdated and left alone. */
  upgrades?: { counts: Partial<Record<string, number>>; pending: string[]; failed: { node: string; reason: string }[]; outdated: string[] };
}

const HINT = "Build the missing images with 'gpuop precompiled build' and set driver.repository, or choose another driver branch";

/** Longest node list kept in the status; the counts stay exact. */
const STATUS_LIST_MAX = 50;
const UPGRADE_STATE_NAMES = ["upgrade-required", "cordon-required", "wait-for-jobs-required", "pod-deletion-required", "drain-required", "pod-restart-required", "validation-required", "uncordon-required", "upgrade-done", "upgrade-failed"];
const IN_PROGRESS = ["cordon-required", "wait-for-jobs-required", "pod-deletion-required", "drain-required", "pod-restart-required", "validation-required", "uncordon-required"];

const list = (names: string[], max = 10) => (names.length > max ? `${names.slice(0, max).join(", ")} and ${names.length - max} more` : names.join(", "));

/**
 * The ClusterPolicy status for what was observed. Condition transition times
 * are kept from `previous` while a condition's status is unchanged, so the
 * result equals the stored status when nothing changed (and nothing is written).
 */
export function computeStatus(inputs: StatusInputs, previous: ClusterPolicyStatus | undefined, now: string): ClusterPolicyStatus {
  let ready: Omit<Condition, "lastTransitionTime">;
  let error: Omit<Condition, "lastTransitionTime">;
  const pools = inputs.pools.map(({ nodeNames: _n, ...p }) => {
    const ds = inputs.daemonSets.get(p.name);
    return { ...p, desired: ds?.desired ?? 0, readyPods: ds?.ready ?? 0 };
  });
  if (inputs.policyErrors.length > 0) {
    const first = inputs.policyErrors[0]!;
    const message = inputs.policyErrors.map((e) => e.message).join("; ");
    error = { type: "Error", status: "True", reason: first.reason, message: `${message}. Existing driver DaemonSets are left as they are until the policy is fixed.` };
    ready = { type: "Ready", status: "False", reason: "InvalidPolicy", message: "the policy is invalid; see the Error condition" };
  } else {
    error = inputs.nodeProblems.length > 0
      ? { type: "Error", status: "True", reason: "NFDLabelsMissing", message: inputs.nodeProblems.map((p) => p.problem).join("; ") }
      : { type: "Error", status: "False", reason: "Reconciled", message: "" };
    const notReady = pools.filter((p) => {
      const n = p.nodes ?? 0;
      return p.desired !== n || p.readyPods < n;
    });
    const missing = inputs.missingImages ?? [];
    const upgrading = IN_PROGRESS.reduce((sum, st) => sum + (inputs.upgrades?.counts[st] ?? 0), 0);
    const drivers = inputs.drivers ?? { fallback: "", noDriver: "", keeping: "" };
    const sentences = (...parts: string[]) => parts.filter(Boolean).join("; ");
    if (drivers.noDriver) {
      // Named as having no driver: never "keep the driver they have" for a node whose driver is gone.
      ready = { type: "Ready", status: "False", reason: "NoDriver", message: `${sentences(drivers.noDriver, drivers.keeping, drivers.fallback)}. ${HINT}` };
    } else if (drivers.keeping) {
      ready = { type: "Ready", status: "False", reason: "PrecompiledImageMissing", message: `${sentences(drivers.keeping, drivers.fallback)}. ${HINT}` };
    } else if (missing.length > 0 && !drivers.fallback) {
      const parts = missing.map((m) => `${m.image} (for ${list(m.nodes)})`);
      ready = { type: "Ready", status: "False", reason: "PrecompiledImageMissing", message: `the registry has no ${parts.join(", ")}; those nodes are not moved to it. ${HINT}` };
    } else if ((inputs.upgrades?.failed.length ?? 0) > 0) {
      const failed = inputs.upgrades!.failed;
      ready = {
        type: "Ready",
        status: "False",
        reason: "DriverUpgradeFailed",
        message: `driver upgrade failed on ${list(failed.map((f) => `${f.node} (${f.reason})`), 5)}; fix the cause, then retry with 'kubectl label node <node> nvidia.com/gpu-driver-upgrade-state=upgrade-required --overwrite'`,
      };
    } else if (inputs.gpuNodes === 0) {
      ready = { type: "Ready", status: "True", reason: "NoGPUNodes", message: "no GPU nodes in the cluster; nothing to deploy" };
    } else if (notReady.length === 0 && inputs.waiting.length === 0 && upgrading === 0) {
      const pods = pools.reduce((s, p) => s + p.readyPods, 0);
      const outdated = inputs.upgrades?.outdated ?? [];
      const stale = outdated.length > 0 ? `; outdated driver left in place (autoUpgrade false or ${"nvidia.com/gpu-driver-upgrade.skip"}) on ${list(outdated)}` : "";
      const summary = `${pods} driver pods ready in ${pools.length} pools${stale}`;
      ready = drivers.fallback
        ? { type: "Ready", status: "True", reason: "ConventionalFallback", message: `${summary}; ${drivers.fallback}` }
        : { type: "Ready", status: "True", reason: "Reconciled", message: summary };
    } else {
      const parts = notReady.map((p) => `${p.name}: ${p.readyPods}/${p.nodes ?? 0} ready`);
      if (upgrading > 0) parts.push(`driver upgrade in progress on ${upgrading} nodes`);
      if (inputs.waiting.length > 0) parts.push(`waiting to change driver: ${list(inputs.waiting)}`);
      if (drivers.fallback) parts.push(drivers.fallback);
      ready = { type: "Ready", status: "False", reason: "DriverNotReady", message: parts.join("; ") };
    }
  }
  // The operand controller reports NVIDIA's other operands in status.operands (docs/adr/0006): a
  // policy whose driver is ready is not ready while an enabled operand is not (or cannot be rendered).
  const operandsNotReady = (previous?.operands ?? []).filter((o) => o.state === "notReady" || o.state === "error");
  if (ready.status === "True" && operandsNotReady.length > 0) {
    ready = { type: "Ready", status: "False", reason: "OperandNotReady", message: `driver ready; not ready: ${operandsNotReady.map((o) => o.name).join(", ")}` };
  }
  const stamp = (c: Omit<Condition, "lastTransitionTime">): Condition => {
    const prev = previous?.conditions?.find((p) => p.type === c.type);
    const base = { ...c, observedGeneration: inputs.generation };
    return { ...base, lastTransitionTime: prev && prev.status === c.status ? prev.lastTransitionTime : now };
  };
  const state = ready.status === "True" && error.status === "False" ? "ready" : "notReady";
  return {
    state,
    namespace: inputs.namespace,
    ...(inputs.generation !== undefined ? { observedGeneration: inputs.generation } : {}),
    conditions: [stamp(ready), stamp(error)],
    // While the policy is invalid the pools are the ones last rendered from a valid policy.
    pools: inputs.policyErrors.length > 0 ? (previous?.pools ?? []) : pools,
    ...(inputs.upgrades
      ? {
          upgrades: {
            // Every state, zeros included: the status is merge-patched, so a state left out would keep its old count.
            nodesByState: Object.fromEntries(UPGRADE_STATE_NAMES.map((st) => [st, inputs.upgrades!.counts[st] ?? 0])),
            pending: inputs.upgrades.pending.slice(0, STATUS_LIST_MAX),
            failed: inputs.upgrades.failed.slice(0, STATUS_LIST_MAX),
            outdated: inputs.upgrades.outdated.slice(0, STATUS_LIST_MAX),
          },
        }
      : inputs.policyErrors.length > 0 && previous?.upgrades ? { upgrades: previous.upgrades } : {}),
  };
}

/** The status of a policy that is not the active one. */
export function ignoredStatus(activeName: string, generation: number | undefined, previous: ClusterPolicyStatus | undefined, now: string): ClusterPolicyStatus {
  const message = `another ClusterPolicy, ${activeName}, is older and active; only one policy is acted on`;
  const prev = previous?.conditions?.find((c) => c.type === "Ready");
  return {
    state: "ignored",
    ...(generation !== undefined ? { observedGeneration: generation } : {}),
    conditions: [{ type: "Ready", status: "False", reason: "Ignored", message, observedGeneration: generation, lastTransitionTime: prev?.status === "False" ? prev.lastTransitionTime : now }],
  };
}
