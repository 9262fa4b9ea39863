// Minimal hand-written shapes of the Kubernetes objects gpuop reads and writes.
// Only the fields gpuop uses are typed; the rest pass through untouched.

export interface ObjectMeta {
  name?: string;
  namespace?: string;
  uid?: string;
  resourceVersion?: string;
  generation?: number;
  creationTimestamp?: string;
  deletionTimestamp?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  ownerReferences?: OwnerReference[];
  finalizers?: string[];
}

export interface OwnerReference {
  apiVersion: string;
  kind: string;
  name: string;
  uid: string;
  controller?: boolean;
  blockOwnerDeletion?: boolean;
}

export interface ListMeta {
  resourceVersion?: string;
  continue?: string;
}

export interface Status {
  kind: "Status";
  code?: number;
  reason?: string;
  message?: string;
}

export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata: ObjectMeta;
}

export interface NodeCondition {
  type: string;
  status: string;
  reason?: string;
  message?: string;
  lastTransitionTime?: string;
}

export interface Node extends KubeObject {
  spec?: { unschedulable?: boolean; taints?: { key: string; value?: string; effect: string }[] };
  status?: {
    nodeInfo?: { kernelVersion?: string; osImage?: string; architecture?: string; operatingSystem?: string };
    conditions?: NodeCondition[];
  };
}

export interface Pod extends KubeObject {
  spec?: { nodeName?: string; containers?: { name: string; image: string }[] };
  status?: {
    phase?: string;
    conditions?: { type: string; status: string }[];
    containerStatuses?: { name: string; ready: boolean; image?: string; imageID?: string; state?: Record<string, { reason?: string; message?: string }> }[];
  };
}

export interface DaemonSet extends KubeObject {
  spec?: Record<string, unknown> & { template?: { metadata?: ObjectMeta; spec?: Record<string, unknown> } };
  status?: {
    desiredNumberScheduled?: number;
    currentNumberScheduled?: number;
    numberReady?: number;
    numberAvailable?: number;
    updatedNumberScheduled?: number;
    observedGeneration?: number;
  };
}

export interface Secret extends KubeObject {
  type?: string;
  data?: Record<string, string>;
}
