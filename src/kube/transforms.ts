// What the informers' caches keep of each object (like controller-runtime's
// cache transforms). A cached Node or Pod is a few hundred bytes instead of
// several kilobytes (managedFields, heartbeat times, images, volumes, env), so
// memory stays small at thousands of nodes.
//
// Everything gpuop's code reads must be listed here: a field left out reads as
// undefined in the controller. Adding a field is one line in the list of the
// object it belongs to. `src/kube/transforms.test.ts` checks each listed field
// survives.
import type { DaemonSet, KubeObject, Node, ObjectMeta, Pod } from "./types.ts";

type Json = Record<string, unknown>;

/**
 * One copy of each short string value the caches hold many of (images, container names,
 * label values, condition types, the namespace): a watch hands every object its own copies,
 * and on thousands of nodes and pods the same few hundred values made up a tenth of the heap.
 * Bounded, so unique values (names, uids) cannot grow it without end; timestamps, uids and
 * resourceVersions are never passed through it.
 */
const internPool = new Map<string, string>();
const INTERN_MAX_ENTRIES = 50_000;
const INTERN_MAX_LENGTH = 256;

export function intern<T>(value: T): T {
  if (typeof value !== "string" || value.length > INTERN_MAX_LENGTH) return value;
  const kept = internPool.get(value);
  if (kept !== undefined) return kept as T;
  if (internPool.size < INTERN_MAX_ENTRIES) internPool.set(value, value);
  return value;
}

/** Keys whose values are unique per object or per change: kept as they come. */
const NOT_INTERNED: ReadonlySet<string> = new Set(["uid", "resourceVersion", "creationTimestamp", "deletionTimestamp", "lastTransitionTime", "startTime", "startedAt", "finishedAt", "message", "containerID"]);

/** Copies the listed keys that are present (undefined stays absent, as the API server stores objects); string values shared (intern). */
function pick(from: Json | undefined, keys: readonly string[]): Json | undefined {
  if (!from) return undefined;
  const out: Json = {};
  for (const k of keys) {
    const v = from[k];
    if (v !== undefined) out[k] = NOT_INTERNED.has(k) ? v : intern(v);
  }
  return out;
}

/** A string map (labels, annotations) with its values shared. */
function internValues(m: Record<string, unknown> | undefined): Record<string, unknown> | undefined {
  if (!m) return m;
  for (const k of Object.keys(m)) m[k] = intern(m[k]);
  return m;
}

/** Keeps only the entries of a map whose key starts with one of the prefixes. */
function pickPrefixed(from: Record<string, unknown> | undefined, prefixes: readonly string[]): Record<string, unknown> | undefined {
  if (!from) return undefined;
  const out: Record<string, unknown> = {};
  let any = false;
  for (const [k, v] of Object.entries(from)) {
    if (prefixes.some((p) => k.startsWith(p))) {
      out[k] = v;
      any = true;
    }
  }
  return any ? out : undefined;
}

/** Drops undefined members, so a transformed object has no `"key": undefined`. */
function compact<T extends Json>(o: T): T {
  for (const k of Object.keys(o)) if (o[k] === undefined) delete o[k];
  return o;
}

/**
 * Metadata every cached object keeps: identity (name, namespace, uid), change
 * tracking (resourceVersion, generation), what selects and tags it (labels,
 * annotations: the upgrade state lives there), ownership and deletion. Dropped:
 * managedFields (often most of an object's size) and finalizers.
 */
const METADATA_KEYS = ["name", "namespace", "uid", "resourceVersion", "generation", "creationTimestamp", "deletionTimestamp", "labels", "annotations", "ownerReferences"] as const;

export function slimMetadata(m: ObjectMeta): ObjectMeta {
  const out = pick(m as Json, METADATA_KEYS) as ObjectMeta;
  internValues(out.labels);
  out.ownerReferences = out.ownerReferences?.map((o) => pick(o as unknown as Json, OWNER_KEYS) as unknown as NonNullable<ObjectMeta["ownerReferences"]>[number]);
  if (out.ownerReferences === undefined) delete out.ownerReferences;
  return out;
}

const OWNER_KEYS = ["apiVersion", "kind", "name", "uid", "controller", "blockOwnerDeletion"] as const;

/**
 * The annotations gpuop reads on nodes and pods are its own and NVIDIA's: on a real node the
 * others (CSI, CNI, cloud agents) can be kilobytes each, on thousands of nodes.
 */
const OWN_ANNOTATION_PREFIXES = ["gpuop.nvidia.com/", "nvidia.com/"] as const;

/** Metadata as slimMetadata, with only gpuop's and NVIDIA's annotations. */
function slimMetadataOwnAnnotations(m: ObjectMeta): ObjectMeta {
  const out = slimMetadata(m) as Json;
  const annotations = internValues(pickPrefixed(m.annotations, OWN_ANNOTATION_PREFIXES));
  if (annotations) out["annotations"] = annotations;
  else delete out["annotations"];
  return out as ObjectMeta;
}

/** Any object: its metadata slimmed, everything else kept (the ClusterPolicy: one object, read whole). */
export function withoutManagedFields<T extends KubeObject>(obj: T): T {
  delete (obj.metadata as { managedFields?: unknown }).managedFields;
  return obj;
}

/**
 * Node: spec.unschedulable and taints (cordoned nodes, drains); status.nodeInfo's
 * kernel, OS image, architecture, OS and container runtime (without NFD; the toolkit's runtime); the Ready condition without its heartbeat
 * time; capacity and allocatable of `nvidia.com/*` only (GPUs the device
 * plugin advertises). Dropped: images, addresses, daemonEndpoints, other resources.
 */
const NODE_SPEC_KEYS = ["unschedulable", "taints"] as const;
/** What gpuop reads of nodeInfo; machine, system and boot ids and the kubelet's versions go. */
const NODE_INFO_KEYS = ["kernelVersion", "osImage", "architecture", "operatingSystem", "containerRuntimeVersion"] as const;
const NODE_CONDITION_KEYS = ["type", "status", "reason", "message", "lastTransitionTime"] as const;
/** The only node condition gpuop reads (kwok and kubelets report five or more). */
const NODE_CONDITION_TYPES: ReadonlySet<string> = new Set(["Ready"]);
const NODE_RESOURCE_PREFIXES = ["nvidia.com/"] as const;

export function slimNode(node: Node): Node {
  const status = node.status as (Json & Node["status"]) | undefined;
  return compact({
    apiVersion: node.apiVersion,
    kind: node.kind,
    metadata: slimMetadataOwnAnnotations(node.metadata),
    spec: pick(node.spec as Json | undefined, NODE_SPEC_KEYS),
    status: status
      ? compact({
          nodeInfo: pick(status.nodeInfo as Json | undefined, NODE_INFO_KEYS),
          conditions: status.conditions?.filter((c) => NODE_CONDITION_TYPES.has(c.type)).map((c) => pick(c as unknown as Json, NODE_CONDITION_KEYS)),
          capacity: pickPrefixed(status.capacity as Record<string, unknown> | undefined, NODE_RESOURCE_PREFIXES),
          allocatable: pickPrefixed(status.allocatable as Record<string, unknown> | undefined, NODE_RESOURCE_PREFIXES),
        })
      : undefined,
  }) as Node;
}

/**
 * Pod: spec.nodeName (which node's driver it is); container and init container
 * names and images (which driver it runs); status.phase and the Ready and ContainersReady conditions;
 * container statuses with ready, restartCount, image, imageID (the digest that
 * runs) and state/lastState (waiting.reason: ImagePullBackOff, CrashLoopBackOff).
 * Labels stay with the metadata (controller-revision-hash, pod-template-generation,
 * the pool label). Dropped: volumes, env, probes, security contexts, tolerations.
 */
const CONTAINER_KEYS = ["name", "image"] as const;
const POD_STATUS_KEYS = ["phase", "reason", "message", "startTime"] as const;
const POD_CONDITION_KEYS = ["type", "status", "reason", "message", "lastTransitionTime"] as const;
/** The pod conditions gpuop reads: Ready, and ContainersReady (since when a driver has not been ready, for the fallback). */
const POD_CONDITION_TYPES: ReadonlySet<string> = new Set(["Ready", "ContainersReady"]);
const CONTAINER_STATUS_KEYS = ["name", "ready", "started", "restartCount", "image", "imageID", "state", "lastState"] as const;

export function slimPod(pod: Pod): Pod {
  const spec = pod.spec as (Json & { containers?: Json[]; initContainers?: Json[] }) | undefined;
  const status = pod.status as (Json & { conditions?: Json[]; containerStatuses?: Json[]; initContainerStatuses?: Json[] }) | undefined;
  return compact({
    apiVersion: pod.apiVersion,
    kind: pod.kind,
    metadata: slimMetadataOwnAnnotations(pod.metadata),
    spec: spec
      ? compact({
          nodeName: spec.nodeName,
          containers: spec.containers?.map((c) => pick(c, CONTAINER_KEYS)),
          initContainers: spec.initContainers?.map((c) => pick(c, CONTAINER_KEYS)),
        })
      : undefined,
    status: status
      ? compact({
          ...pick(status, POD_STATUS_KEYS),
          conditions: status.conditions?.filter((c) => POD_CONDITION_TYPES.has(c["type"] as string)).map((c) => pick(c, POD_CONDITION_KEYS)),
          containerStatuses: status.containerStatuses?.map((c) => pick(c, CONTAINER_STATUS_KEYS)),
          initContainerStatuses: status.initContainerStatuses?.map((c) => pick(c, CONTAINER_STATUS_KEYS)),
        })
      : undefined,
  }) as Pod;
}

/**
 * An operand's pod (toolkit, device plugin, GFD, DCGM exporter, validator): gpuop reads only
 * where it runs, whether it is Ready and whether it is going (the gates, the status, the
 * upgrade's waits), so its containers and their statuses are not kept.
 */
export function slimOperandPod(pod: Pod): Pod {
  const status = pod.status as (Json & { conditions?: Json[] }) | undefined;
  return compact({
    apiVersion: pod.apiVersion,
    kind: pod.kind,
    metadata: slimMetadataOwnAnnotations(pod.metadata),
    spec: pod.spec?.nodeName !== undefined ? { nodeName: pod.spec.nodeName } : undefined,
    status: status
      ? compact({
          phase: intern(status["phase"]),
          conditions: status.conditions?.filter((c) => POD_CONDITION_TYPES.has(c["type"] as string)).map((c) => pick(c, POD_CONDITION_KEYS)),
        })
      : undefined,
  }) as Pod;
}

/**
 * What each informer's watch cuts from an event's text before parsing it (src/kube/unread-members.ts):
 * members that are large and that the kind's transform above never reads. The cut takes members
 * with these names whose value is an array or an object, at any depth, so a name here must not be
 * one the transform keeps anywhere in that kind; `src/kube/transforms.test.ts` checks each
 * transform gives the same with and without the cut.
 */
export const UNREAD = ["managedFields"] as const;
/** A node's images (every image it holds: kilobytes on a real node). */
export const NODE_UNREAD = ["managedFields", "images"] as const;
/** A driver pod's volumes, mounts, environment, probes and scheduling: most of its text. */
export const POD_UNREAD = ["managedFields", "volumes", "volumeMounts", "env", "envFrom", "tolerations", "affinity", "securityContext", "resources", "readinessProbe", "livenessProbe", "startupProbe"] as const;
/** An operand pod: its containers and their statuses too (slimOperandPod keeps neither). */
export const OPERAND_POD_UNREAD = [...POD_UNREAD, "containers", "initContainers", "containerStatuses", "initContainerStatuses"] as const;

/**
 * DaemonSet: spec whole (the controller compares it with the one it renders,
 * template included) and status whole (counts, observedGeneration). There is one
 * per pool, so they cost little; only managedFields go.
 */
export function slimDaemonSet(ds: DaemonSet): DaemonSet {
  return compact({ apiVersion: ds.apiVersion, kind: ds.kind, metadata: slimMetadata(ds.metadata), spec: ds.spec, status: ds.status }) as DaemonSet;
}
