// Compile-time checks (`make typecheck`), never run: the core's own shapes must fit the kube
// client's types, so the controller passes them without casts. A mismatch fails tsc here.
import type { DriverDaemonSet } from "../src/core/render.ts";
import type { NodeLike } from "../src/core/gpu-node.ts";
import type { DaemonSet, Node } from "../src/kube/types.ts";

type Fits<A extends B, B> = [A, B];

export type RenderedDaemonSetFitsTheClient = Fits<DriverDaemonSet, DaemonSet>;
export type ClientNodeFitsNodeLike = Fits<Node, NodeLike>;
