// The chart's security parts: the ValidatingAdmissionPolicy that keeps the operator's
// ServiceAccount to its own node labels and spec.unschedulable (tested in the real cluster,
// with a real ServiceAccount token), the NetworkPolicy, the driver ServiceAccount without an
// automounted token, the allow-list, GPU node label and registry CA values, and the NOTES.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { parseAllDocuments } from "yaml";
import { attachCluster, type LocalCluster } from "./harness/cluster.ts";
import { chartDir, Helm, writeTokenKubeconfig, type KubeManifest } from "./harness/helm.ts";
import { deleteNodes, gpuNodeObject } from "./harness/nodes.ts";
import { installCrd } from "./harness/policy.ts";
import { eventually } from "./harness/wait.ts";
import { KubeClient } from "../src/kube/client.ts";
import type { Node } from "../src/kube/types.ts";

const NS = "gpuop-vap";
const RELEASE = "vap-test";
const NAME = "vap-test-gpu-operator";
const NODE = "vap-gpu-0";

let cluster: LocalCluster;
let admin: KubeClient;
let helm: Helm;

before(async () => {
  cluster = attachCluster(process.env.GPUOP_TEST_CLUSTER ?? "");
  admin = cluster.client();
  helm = new Helm(cluster.kubeconfig);
});

after(async () => {
  helm?.cleanup();
  await admin?.close();
});

const find = (objs: KubeManifest[], kind: string, name?: string) => {
  const o = objs.find((x) => x.kind === kind && (name === undefined || x.metadata.name === name));
  assert.ok(o, `no ${kind} ${name ?? ""}`);
  return o as KubeManifest & Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
};

describe("chart security settings (helm template)", () => {
  test("driver pods get no automounted token, with or without the driver manager", async () => {
    for (const args of [[], ["--set", "driver.manager.image=k8s-driver-manager,driver.manager.version=v0.6.10"]]) {
      const objs = await helm.template(args);
      assert.equal(find(objs, "ServiceAccount", "nvidia-driver").automountServiceAccountToken, false, args.join(" "));
    }
    // Without the manager, the driver ServiceAccount is bound to nothing.
    const plain = await helm.template();
    assert.equal(plain.filter((o) => o.kind.endsWith("RoleBinding") && JSON.stringify(o).includes('"nvidia-driver"')).length, 0);
  });

  test("a NetworkPolicy closes the operator's ports, opening metrics to the listed peers only", async () => {
    const closed = find(await helm.template(), "NetworkPolicy");
    assert.deepEqual(closed.spec.podSelector, { matchLabels: { "app.kubernetes.io/name": "gpu-operator", "app.kubernetes.io/instance": "gpu-operator" } });
    assert.deepEqual(closed.spec.policyTypes, ["Ingress"]);
    assert.deepEqual(closed.spec.ingress, []);
    const open = find(await helm.template(["--set", "operator.networkPolicy.metricsFrom[0].namespaceSelector.matchLabels.team=monitoring"]), "NetworkPolicy");
    assert.deepEqual(open.spec.ingress, [{ from: [{ namespaceSelector: { matchLabels: { team: "monitoring" } } }], ports: [{ port: "metrics", protocol: "TCP" }] }]);
    const none = await helm.template(["--set", "operator.networkPolicy.enabled=false"]);
    assert.equal(none.filter((o) => o.kind === "NetworkPolicy").length, 0);
  });

  test("allow-list, GPU node label and registry CA become operator flags and a mounted CA", async () => {
    const objs = await helm.template([
      "--set", "operator.allowedImageRepositories={nvcr.io/nvidia,registry.example.com:5000}",
      "--set", "operator.gpuNodeLabel=node-restriction.kubernetes.io/nvidia-gpu=true",
      "--set", "operator.registryCA.configMap=private-ca,operator.registryCA.key=root.pem",
    ]);
    const pod = find(objs, "Deployment").spec.template.spec;
    const args = pod.containers[0].args as string[];
    assert.ok(args.includes("--allowed-image-repositories=nvcr.io/nvidia,registry.example.com:5000"), args.join(" "));
    assert.ok(args.includes("--gpu-node-label=node-restriction.kubernetes.io/nvidia-gpu=true"));
    assert.ok(args.includes("--registry-ca-file=/etc/gpuop/registry-ca/root.pem"));
    assert.deepEqual(pod.volumes, [{ name: "registry-ca", configMap: { name: "private-ca", items: [{ key: "root.pem", path: "root.pem" }] } }]);
    assert.deepEqual(pod.containers[0].volumeMounts, [{ name: "registry-ca", mountPath: "/etc/gpuop/registry-ca", readOnly: true }]);
    // The defaults add none of them.
    const plain = find(await helm.template(), "Deployment").spec.template.spec;
    assert.ok(!(plain.containers[0].args as string[]).some((a) => /allowed-image|gpu-node-label|registry-ca/.test(a)));
    assert.equal(plain.volumes, undefined);
    // A label a kubelet could set on itself is refused by the schema.
    const r = await helm.run(["template", "gpu-operator", chartDir, "--set", "operator.gpuNodeLabel=nvidia.com/gpu.present=true"]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /\/operator\/gpuNodeLabel/);
  });

  test("NOTES say that write access to ClusterPolicies equals cluster-admin", async () => {
    // A client-side dry run still maps the ClusterPolicy's kind, so the CRD must be there.
    await installCrd(cluster);
    // A namespace of its own: other tests leave an operator-made nvidia-driver ServiceAccount in gpu-operator, which helm refuses to adopt.
    const out = await helm.ok(["install", "notes-check", chartDir, "--namespace", "gpuop-notes-check", "--dry-run=client"]);
    assert.match(out, /write access to ClusterPolicies \(clusterpolicies\.nvidia\.com\) equals\s+cluster-admin/);
  });
});

describe("the node admission policy, in the real cluster", () => {
  let operator: KubeClient;
  let manifests: KubeManifest[] = [];

  before(async () => {
    // The chart's ServiceAccount, RBAC and admission policy for another release, so the test
    // runs as that ServiceAccount with the exact rights the chart gives it.
    const out = await helm.ok(["template", RELEASE, chartDir, "--namespace", NS, "--show-only", "templates/serviceaccount.yaml", "--show-only", "templates/rbac.yaml", "--show-only", "templates/node-admission-policy.yaml"]);
    // A namespace left terminating by an earlier run must be gone before it is made again.
    await eventually(`namespace ${NS} active`, async () => {
      const ns = await admin.get<{ status?: { phase?: string } }>(`/api/v1/namespaces/${NS}`).catch(() => undefined);
      if (ns?.status?.phase === "Active") return true;
      if (!ns) await admin.create("/api/v1/namespaces", { metadata: { name: NS } }).catch(() => undefined);
      return undefined;
    }, { timeoutMs: 120_000 });
    await cluster.kubectl(["apply", "-f", "-"], { input: out });
    manifests = parseAllDocuments(out).map((d) => d.toJSON() as KubeManifest | null).filter((o): o is KubeManifest => o !== null);
    assert.ok(manifests.some((m) => m.kind === "ValidatingAdmissionPolicyBinding"));
    await admin.create<Node>("/api/v1/nodes", gpuNodeObject({ name: NODE, kernel: "5.15.0-69-generic", labels: { "team.example.com/owner": "ml" } }));
    const token = (await cluster.kubectl(["create", "token", NAME, "-n", NS, "--duration=1h"])).stdout.trim();
    const kubeconfig = join(helm.home, "vap-operator.kubeconfig");
    writeTokenKubeconfig(cluster.kubeconfig, token, kubeconfig);
    operator = KubeClient.load({ kubeconfig });
    // The policy takes effect once the API server has loaded it: wait for a refusal.
    await eventually("the admission policy to refuse a foreign label", async () => {
      try {
        await operator.mergePatch(`/api/v1/nodes/${NODE}`, { metadata: { labels: { "probe.example.com/x": "1" } } });
        await admin.mergePatch(`/api/v1/nodes/${NODE}`, { metadata: { labels: { "probe.example.com/x": null } } });
        return undefined;
      } catch (err) {
        return (err as { status?: number }).status === 422 || (err as { status?: number }).status === 403 ? true : undefined;
      }
    }, { timeoutMs: 120_000, intervalMs: 500 });
  });

  after(async () => {
    await operator?.close();
    await deleteNodes(admin, [NODE]).catch(() => undefined);
    for (const m of manifests.filter((x) => !x.metadata.namespace)) {
      await cluster.kubectl(["delete", m.kind, m.metadata.name, "--ignore-not-found"]).catch(() => undefined);
    }
    await admin.delete(`/api/v1/namespaces/${NS}`).catch(() => undefined);
  });

  const refused = async (patch: unknown, message: RegExp) => {
    await assert.rejects(operator.mergePatch(`/api/v1/nodes/${NODE}`, patch), (e: Error & { status?: number }) => {
      assert.ok(e.status === 422 || e.status === 403, `status ${e.status}: ${e.message}`);
      assert.match(e.message, message);
      return true;
    });
  };

  test("the operator's ServiceAccount may set gpuop's labels, annotations and spec.unschedulable", async () => {
    await operator.mergePatch(`/api/v1/nodes/${NODE}`, {
      metadata: {
        labels: { "nvidia.com/gpu.present": "true", "nvidia.com/gpu.deploy.driver": "true", "nvidia.com/gpu-driver-upgrade-state": "upgrade-done", "gpuop.nvidia.com/driver-pool": "nvidia-driver-daemonset-x" },
        annotations: { "gpuop.nvidia.com/note": "1" },
      },
    });
    await operator.mergePatch(`/api/v1/nodes/${NODE}`, { spec: { unschedulable: true } });
    await operator.mergePatch(`/api/v1/nodes/${NODE}`, { spec: { unschedulable: null }, metadata: { labels: { "gpuop.nvidia.com/driver-pool": null } } });
    const node = await admin.get<Node>(`/api/v1/nodes/${NODE}`);
    assert.equal(node.metadata.labels?.["nvidia.com/gpu-driver-upgrade-state"], "upgrade-done");
    assert.equal(node.metadata.labels?.["gpuop.nvidia.com/driver-pool"], undefined);
  });

  test("the operator's ServiceAccount may not change other labels, annotations, taints or metadata", async () => {
    await refused({ metadata: { labels: { "node-role.kubernetes.io/control-plane": "" } } }, /may change only its own node labels .* not node-role\.kubernetes\.io\/control-plane/);
    await refused({ metadata: { labels: { "team.example.com/owner": null } } }, /not team\.example\.com\/owner/);
    await refused({ metadata: { labels: { "nvidia.com/gpu.product": "H100" } } }, /not nvidia\.com\/gpu\.product/);
    await refused({ metadata: { annotations: { "team.example.com/contact": "ml-oncall" } } }, /only gpuop\.nvidia\.com\/\* node annotations, not team\.example\.com\/contact/);
    await refused({ spec: { taints: [{ key: "evil", effect: "NoSchedule" }] } }, /only spec\.unschedulable/);
    await refused({ metadata: { finalizers: ["example.com/hold"] } }, /owner references or finalizers/);
    // Others (the admin here) are not limited by it.
    await admin.mergePatch(`/api/v1/nodes/${NODE}`, { metadata: { labels: { "team.example.com/owner": "infra" } } });
  });
});
