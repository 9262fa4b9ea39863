import type { KubeClient } from "../../src/kube/client.ts";
import type { Node } from "../../src/kube/types.ts";

/** What distinguishes one simulated GPU node from another. */
export interface SimulatedGpuNode {
  name: string;
  /** Kernel release, as `uname -r` prints it. */
  kernel: string;
  /** os-release ID and VERSION_ID, e.g. ubuntu / 22.04. */
  os?: { id: string; versionId: string; prettyName?: string };
  /** kubernetes.io/arch: amd64 (default), arm64, … */
  arch?: string;
  /** Extra labels, e.g. nvidia.com/gpu.deploy.driver=false. */
  labels?: Record<string, string>;
  /** Leave out Node Feature Discovery's labels, as on a node NFD has not reached. */
  withoutNfdLabels?: boolean;
}

/** Annotation that kwok's controller (as kwokctl configures it) manages nodes by. */
export const KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node";

/**
 * A Node object as Node Feature Discovery and the kubelet would leave a GPU
 * node: NVIDIA's PCI vendor label, kernel and OS labels, and matching nodeInfo.
 * kwok takes it over, keeps it Ready and runs the pods scheduled on it.
 */
export function gpuNodeObject(n: SimulatedGpuNode): Node {
  const os = n.os ?? { id: "ubuntu", versionId: "22.04" };
  const arch = n.arch ?? "amd64";
  const nfd: Record<string, string> = n.withoutNfdLabels
    ? {}
    : {
        "feature.node.kubernetes.io/pci-10de.present": "true",
        "feature.node.kubernetes.io/kernel-version.full": n.kernel,
        "feature.node.kubernetes.io/system-os_release.ID": os.id,
        "feature.node.kubernetes.io/system-os_release.VERSION_ID": os.versionId,
      };
  return {
    apiVersion: "v1",
    kind: "Node",
    metadata: {
      name: n.name,
      annotations: { [KWOK_NODE_ANNOTATION]: "fake", "node.alpha.kubernetes.io/ttl": "0" },
      labels: {
        "kubernetes.io/arch": arch,
        "kubernetes.io/os": "linux",
        "kubernetes.io/hostname": n.name,
        "type": "kwok",
        ...nfd,
        ...n.labels,
      },
    },
    spec: {},
    status: {
      nodeInfo: {
        kernelVersion: n.kernel,
        osImage: os.prettyName ?? prettyName(os),
        architecture: arch,
        operatingSystem: "linux",
      },
    },
  };
}

/** os-release PRETTY_NAME as the kubelet reports it in nodeInfo.osImage (Ubuntu adds a point release). */
function prettyName(os: { id: string; versionId: string }): string {
  const names: Record<string, string> = { ubuntu: "Ubuntu", rhel: "Red Hat Enterprise Linux", rocky: "Rocky Linux", ol: "Oracle Linux Server", debian: "Debian GNU/Linux" };
  const name = names[os.id] ?? os.id;
  return os.id === "ubuntu" ? `${name} ${os.versionId}.4 LTS` : `${name} ${os.versionId}`;
}

/** Capacity for a node with 8 GPUs; kwok reports it as allocatable. */
const capacity = { cpu: "64", memory: "512Gi", pods: "110", "nvidia.com/gpu": "8" };

/** Creates a simulated GPU node and returns it as the API server stored it. */
export async function createGpuNode(client: KubeClient, n: SimulatedGpuNode): Promise<Node> {
  const obj = gpuNodeObject(n);
  (obj.status as Record<string, unknown>).capacity = capacity;
  (obj.status as Record<string, unknown>).allocatable = capacity;
  return client.create<Node>("/api/v1/nodes", obj);
}

/** Deletes simulated nodes, ignoring ones already gone. */
export async function deleteNodes(client: KubeClient, names: string[]): Promise<void> {
  await Promise.all(
    names.map((name) =>
      client.delete(`/api/v1/nodes/${name}`).catch((e: unknown) => {
        if ((e as { status?: number }).status !== 404) throw e;
      }),
    ),
  );
}
