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
  /** Driver images the registry lacks, and the nodes that keep their current driver because of it. */
  missingImages?: { image: string; nodes: string[] }[];
}

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
    if (missing.length > 0) {
      const parts = missing.map((m) => `${m.image} (for ${list(m.nodes)})`);
      ready = {
        type: "Ready",
        status: "False",
        reason: "PrecompiledImageMissing",
        message: `the registry has no ${parts.join(", ")}; those nodes keep the driver they have. Build the images with 'gpuop precompiled build' and set driver.repository, or choose another driver branch`,
      };
    } else if (inputs.gpuNodes === 0) {
      ready = { type: "Ready", status: "True", reason: "NoGPUNodes", message: "no GPU nodes in the cluster; nothing to deploy" };
    } else if (notReady.length === 0 && inputs.waiting.length === 0) {
      const pods = pools.reduce((s, p) => s + p.readyPods, 0);
      ready = { type: "Ready", status: "True", reason: "Reconciled", message: `${pods} driver pods ready in ${pools.length} pools` };
    } else {
      const parts = notReady.map((p) => `${p.name}: ${p.readyPods}/${p.nodes ?? 0} ready`);
      if (inputs.waiting.length > 0) parts.push(`waiting to change driver: ${list(inputs.waiting)}`);
      ready = { type: "Ready", status: "False", reason: "DriverNotReady", message: parts.join("; ") };
    }
  }
  // The operand controller reports NVIDIA's other operands in status.operands (docs/adr/0014): a
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
