// The Helm chart with the real helm against the real cluster: lint and
// template checks, schema refusals, the seed's `helm install` from a chart
// repository as in NVIDIA's docs, an upgrade that turns precompiled off, failed
// upgrades that leave the drivers alone, private registries, and uninstall.
// The operator runs as a local process with a token of the chart's
// ServiceAccount, never admin credentials, so the chart's RBAC must suffice.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { attachCluster, type LocalCluster } from "./harness/cluster.ts";
import { chartDir, Helm, serveFolder, writeTokenKubeconfig, type KubeManifest } from "./harness/helm.ts";
import { createGpuNode, deleteNodes, gpuNodeObject } from "./harness/nodes.ts";
import { imageNodeOptions, startOperator, type OperatorProcess } from "./harness/operator.ts";
import { deletePolicies, driverDaemonSets, driverPods, getPolicy, POLICY_PATH, waitForDriverPods, waitForState, waitForNoDriverPods } from "./harness/policy.ts";
import { localClient, pushImage, startRegistry, type LocalRegistry } from "./harness/registry.ts";
import { eventually } from "./harness/wait.ts";
import type { KubeClient } from "../src/kube/client.ts";
import type { RegistryClient } from "../src/registry/client.ts";
import type { DaemonSet, Node, Pod } from "../src/kube/types.ts";

const NS = "gpu-operator";
const RELEASE = "gpu-operator";
const SA = "system:serviceaccount:gpu-operator:gpu-operator";
const GPU_NODES = [
  { name: "helm-gpu-a", kernel: "5.15.0-69-generic" },
  { name: "helm-gpu-b", kernel: "5.15.0-70-generic" },
];
const CPU_NODE = "helm-cpu-0";
const NO_NFD_NODE = "helm-gpu-no-nfd";

let cluster: LocalCluster;
let client: KubeClient;
let helm: Helm;
let repo: { url: string; close(): Promise<void> } | undefined;
let operator: OperatorProcess | undefined;
let saKubeconfig = "";
let registry: LocalRegistry | undefined;
let push: RegistryClient | undefined;

const kubectlPodNames = async () =>
  (await cluster.kubectl(["get", "pods", "-l", "app=nvidia-driver-daemonset", "-n", NS, "--no-headers", "-o", "custom-columns=NAME:.metadata.name"])).stdout.trim().split("\n").filter(Boolean);
const podTemplate = (ds: DaemonSet) => ds.spec?.template?.spec as { containers: { image: string }[]; imagePullSecrets?: { name: string }[] };
const find = (objs: KubeManifest[], kind: string, name: string, namespace?: string) => {
  const o = objs.find((x) => x.kind === kind && x.metadata.name === name && (namespace === undefined || x.metadata.namespace === namespace));
  assert.ok(o, `helm template has no ${kind} ${namespace ? `${namespace}/` : ""}${name}`);
  return o as KubeManifest & Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
};
const rules = (o: KubeManifest) => (o.rules as { apiGroups: string[]; resources: string[]; verbs: string[]; resourceNames?: string[] }[]).map((r) => ({ ...r }));

/** A plain (non-GPU) simulated node for the operator's own pod. */
async function createCpuNode(name: string): Promise<void> {
  const node = gpuNodeObject({ name, kernel: "6.8.0-31-generic", withoutNfdLabels: true });
  const capacity = { cpu: "8", memory: "32Gi", pods: "110" };
  Object.assign(node.status as object, { capacity, allocatable: capacity });
  await client.create<Node>("/api/v1/nodes", node);
}

async function deleteNamespace(name: string): Promise<void> {
  await client.delete(`/api/v1/namespaces/${name}`).catch(() => undefined);
  await eventually(`namespace ${name} gone`, async () => {
    try {
      await client.get(`/api/v1/namespaces/${name}`);
      return undefined;
    } catch (e) {
      return (e as { status?: number }).status === 404 ? true : undefined;
    }
  }, { timeoutMs: 120_000 });
}

/** Names and uids of the live driver DaemonSets, to show a refused upgrade changed nothing. */
const daemonSetIdentities = async () => (await driverDaemonSets(client, NS)).map((d) => `${d.metadata.name}@${d.metadata.uid}@${d.metadata.generation}`).sort();

before(async () => {
  cluster = attachCluster(process.env.GPUOP_TEST_CLUSTER ?? "");
  client = cluster.client();
  helm = new Helm(cluster.kubeconfig);
  // A ClusterPolicy left by another test would block the chart's cluster-policy (no CRD yet: none).
  await deletePolicies(client).catch((e: { status?: number }) => {
    if (e.status !== 404) throw e;
  });
  // An operator run without the chart (another test file) creates the nvidia-driver ServiceAccount
  // itself; helm refuses to adopt an object it does not own.
  for (const sa of ["nvidia-driver", "nvidia-container-toolkit", "nvidia-device-plugin", "nvidia-gpu-feature-discovery", "nvidia-dcgm-exporter", "nvidia-operator-validator"]) {
    await client.delete(`/api/v1/namespaces/${NS}/serviceaccounts/${sa}`).catch((e: { status?: number }) => {
      if (e.status !== 404) throw e;
    });
  }
  await deleteNodes(client, [...GPU_NODES.map((n) => n.name), CPU_NODE, NO_NFD_NODE]);
  await createCpuNode(CPU_NODE);
  for (const n of GPU_NODES) await createGpuNode(client, { ...n, os: { id: "ubuntu", versionId: "22.04" } });
});

after(async () => {
  await operator?.stop();
  if (helm) {
    await helm.run(["uninstall", RELEASE, "-n", NS, "--wait"]);
    helm.cleanup();
  }
  await repo?.close();
  await push?.close();
  await registry?.stop();
  await deletePolicies(client).catch(() => undefined);
  await deleteNodes(client, [...GPU_NODES.map((n) => n.name), CPU_NODE, NO_NFD_NODE]);
  await deleteNamespace(NS);
  await client.close();
});

describe("chart checks without installing", () => {
  test("helm lint --strict passes", async () => {
    const out = await helm.ok(["lint", "--strict", chartDir]);
    assert.match(out, /1 chart\(s\) linted, 0 chart\(s\) failed/);
  });

  test("RBAC grants exactly what the controller uses, nothing cluster-wide beyond nodes, ClusterPolicies and the pods of nodes being upgraded", async () => {
    const objs = await helm.template();
    assert.deepEqual(rules(find(objs, "ClusterRole", "gpu-operator")), [
      { apiGroups: ["nvidia.com"], resources: ["clusterpolicies"], verbs: ["list", "watch"] },
      { apiGroups: ["nvidia.com"], resources: ["clusterpolicies/status"], verbs: ["patch"] },
      { apiGroups: ["nvidia.com"], resources: ["clusterpolicies/finalizers"], verbs: ["update"] },
      { apiGroups: [""], resources: ["nodes"], verbs: ["list", "watch", "patch"] },
      { apiGroups: [""], resources: ["pods"], verbs: ["list"] },
      { apiGroups: [""], resources: ["pods/eviction"], verbs: ["create"] },
      { apiGroups: ["node.k8s.io"], resources: ["runtimeclasses"], verbs: ["get", "create", "patch"] },
    ]);
    assert.deepEqual(rules(find(objs, "Role", "gpu-operator", NS)), [
      { apiGroups: ["apps"], resources: ["daemonsets"], verbs: ["list", "watch", "create", "patch", "delete"] },
      { apiGroups: [""], resources: ["pods"], verbs: ["list", "watch"] },
      { apiGroups: [""], resources: ["services"], verbs: ["list", "watch", "create", "patch", "delete"] },
      { apiGroups: [""], resources: ["serviceaccounts"], resourceNames: ["nvidia-container-toolkit", "nvidia-device-plugin", "nvidia-gpu-feature-discovery", "nvidia-dcgm-exporter", "nvidia-operator-validator"], verbs: ["get"] },
      { apiGroups: [""], resources: ["serviceaccounts"], resourceNames: ["nvidia-driver"], verbs: ["get"] },
      { apiGroups: ["coordination.k8s.io"], resources: ["leases"], verbs: ["create"] },
      { apiGroups: ["coordination.k8s.io"], resources: ["leases"], resourceNames: ["gpuop-leader"], verbs: ["get", "update"] },
    ]);
    assert.deepEqual(rules(find(objs, "Role", "gpu-operator-events", "default")), [{ apiGroups: [""], resources: ["events"], verbs: ["create"] }]);
    // NVIDIA's config-manager (device plugin and GFD pods) reads nodes, under NVIDIA's ClusterRole names; nothing else.
    const configManager = ["nvidia-device-plugin", "nvidia-gpu-feature-discovery"];
    for (const name of configManager) {
      assert.deepEqual(rules(find(objs, "ClusterRole", name)), [{ apiGroups: [""], resources: ["nodes"], verbs: ["get", "list", "watch"] }]);
      assert.deepEqual(find(objs, "ClusterRoleBinding", name).subjects, [{ kind: "ServiceAccount", name, namespace: NS }]);
    }
    for (const kind of ["ClusterRoleBinding", "RoleBinding"]) {
      for (const b of objs.filter((o) => o.kind === kind && !configManager.includes(o.metadata.name))) {
        assert.deepEqual(b.subjects, [{ kind: "ServiceAccount", name: "gpu-operator", namespace: NS }], `${kind} ${b.metadata.name}`);
      }
    }
    const text = JSON.stringify(objs.filter((o) => o.kind.endsWith("Role")));
    assert.doesNotMatch(text, /"\*"|secrets/);
    // Pull secrets: read access to exactly the named ones, for the registry check.
    const withSecrets = rules(find(await helm.template(["--set", "driver.imagePullSecrets={pull-a,pull-b}"]), "Role", "gpu-operator", NS));
    assert.deepEqual(withSecrets.filter((r) => r.resources.includes("secrets")), [{ apiGroups: [""], resources: ["secrets"], resourceNames: ["pull-a", "pull-b"], verbs: ["get"] }]);
    const noCheck = rules(find(await helm.template(["--set", "driver.imagePullSecrets={pull-a}", "--set", "operator.imageCheck.enabled=false"]), "Role", "gpu-operator", NS));
    assert.equal(noCheck.filter((r) => r.resources.includes("secrets")).length, 0);
    // Without a driver manager the driver pods need no API access at all.
    const driverSa = find(objs, "ServiceAccount", "nvidia-driver", NS);
    assert.equal(driverSa.automountServiceAccountToken, false);
    assert.equal(objs.filter((o) => o.metadata.name.endsWith("driver-manager")).length, 0);
  });

  test("the operator Deployment is locked down and leader-elected", async () => {
    const objs = await helm.template();
    const d = find(objs, "Deployment", "gpu-operator", NS);
    const pod = d.spec.template.spec;
    const [c, ...others] = pod.containers;
    assert.equal(others.length, 0);
    assert.equal(d.spec.replicas, 1);
    assert.equal(pod.serviceAccountName, "gpu-operator");
    assert.deepEqual(pod.securityContext, { runAsNonRoot: true, seccompProfile: { type: "RuntimeDefault" } });
    assert.deepEqual(c.securityContext, {
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      runAsNonRoot: true,
      capabilities: { drop: ["ALL"] },
      seccompProfile: { type: "RuntimeDefault" },
    });
    assert.equal(c.image, "ghcr.io/gpuop/gpuop:0.1.0");
    assert.deepEqual(c.args, ["operator", "--metrics-bind-address=:8080", "--health-bind-address=:8081", "--lease-name=gpuop-leader", "--image-recheck-seconds=60", "--default-driver-version=550.54.15", "--image-pull-grace-seconds=300"]);
    assert.deepEqual(c.env, [
      { name: "OPERATOR_NAMESPACE", valueFrom: { fieldRef: { fieldPath: "metadata.namespace" } } },
      { name: "POD_NAME", valueFrom: { fieldRef: { fieldPath: "metadata.name" } } },
      { name: "NODE_OPTIONS", value: "--max-semi-space-size=8 --max-old-space-size=384" },
    ]);
    // The chart's default memory limit gives the heap cap the image has (for installs without the chart).
    assert.equal(imageNodeOptions(), c.env[2].value);
    // The heap cap follows the memory limit: the limit less 128 MiB, at least half of it; no limit, the image's.
    const nodeOptions = async (memory: string | null) =>
      find(await helm.template(memory === null ? ["--set", "operator.resources.limits=null"] : ["--set", `operator.resources.limits.memory=${memory}`]), "Deployment", "gpu-operator", NS)
        .spec.template.spec.containers[0].env.find((e: { name: string }) => e.name === "NODE_OPTIONS")?.value;
    assert.equal(await nodeOptions("1536Mi"), "--max-semi-space-size=8 --max-old-space-size=1408");
    assert.equal(await nodeOptions("2G"), "--max-semi-space-size=8 --max-old-space-size=1779");
    assert.equal(await nodeOptions("200Mi"), "--max-semi-space-size=8 --max-old-space-size=100");
    assert.equal(await nodeOptions(null), undefined);
    assert.equal(c.livenessProbe.httpGet.path, "/healthz");
    assert.equal(c.readinessProbe.httpGet.path, "/readyz");
    assert.ok(c.resources.requests.cpu && c.resources.limits.memory);
    assert.equal(pod.tolerations, undefined);

    const single = find(await helm.template(["--set", "operator.leaderElection.enabled=false", "--set", "operator.version=0.2.0", "--set", "operator.logLevel=debug", "--set", "operator.imageCheck.enabled=false", "--set", "operator.conventionalFallback.enabled=false"]), "Deployment", "gpu-operator", NS);
    const sc = single.spec.template.spec.containers[0];
    assert.deepEqual(sc.args.slice(3), ["--no-leader-elect", "--no-image-check", "--default-driver-version=550.54.15", "--no-conventional-fallback"]);
    assert.equal(sc.image, "ghcr.io/gpuop/gpuop:0.2.0");
    assert.deepEqual(sc.env.find((e: { name: string }) => e.name === "GPUOP_DEBUG"), { name: "GPUOP_DEBUG", value: "1" });
  });

  test("the ClusterPolicy is rendered from NVIDIA-named values", async () => {
    const defaults = find(await helm.template(), "ClusterPolicy", "cluster-policy");
    assert.deepEqual(
      { ...defaults.spec.driver, upgradePolicy: undefined },
      { enabled: true, usePrecompiled: false, repository: "nvcr.io/nvidia", image: "driver", version: "550.54.15", imagePullPolicy: "IfNotPresent", kernelModuleType: "auto", rdma: { enabled: false, useHostMofed: false }, upgradePolicy: undefined },
    );
    assert.equal(defaults.spec.driver.upgradePolicy.maxUnavailable, "25%");
    // NVIDIA's chart value gpuPodDeletion becomes the ClusterPolicy's podDeletion; autoUpgrade is on by default, as in NVIDIA's chart.
    assert.equal(defaults.spec.driver.upgradePolicy.autoUpgrade, true);
    assert.deepEqual(defaults.spec.driver.upgradePolicy.podDeletion, { force: false, timeoutSeconds: 300, deleteEmptyDir: false });
    assert.equal(defaults.spec.driver.upgradePolicy.gpuPodDeletion, undefined);

    const objs = await helm.template([
      "--set", "driver.usePrecompiled=true",
      "--set", "driver.version=525", // an integer to helm; the policy needs the string "525"
      "--set", "driver.repository=registry.example.com:5000/private",
      "--set", "driver.imagePullSecrets={pull-a,pull-b}",
      "--set", "driver.kernelModuleType=open",
      "--set", "driver.upgradePolicy.maxUnavailable=2",
      "--set", "driver.upgradePolicy.gpuPodDeletion.timeoutSeconds=77",
      "--set", "driver.env[0].name=NVIDIA_DEBUG,driver.env[0].value=1",
      "--set", "driver.resources.limits.memory=2Gi",
      "--set", "driver.manager.image=k8s-driver-manager,driver.manager.version=v0.6.10",
    ]);
    const driver = find(objs, "ClusterPolicy", "cluster-policy").spec.driver;
    assert.equal(driver.usePrecompiled, true);
    assert.equal(driver.version, "525");
    assert.equal(driver.repository, "registry.example.com:5000/private");
    assert.deepEqual(driver.imagePullSecrets, ["pull-a", "pull-b"]);
    assert.equal(driver.kernelModuleType, "open");
    assert.equal(driver.upgradePolicy.maxUnavailable, 2);
    assert.equal(driver.upgradePolicy.podDeletion.timeoutSeconds, 77);
    assert.deepEqual(driver.env, [{ name: "NVIDIA_DEBUG", value: "1" }]);
    assert.deepEqual(driver.resources, { limits: { memory: "2Gi" } });
    assert.deepEqual(driver.manager, { repository: "nvcr.io/nvidia/cloud-native", image: "k8s-driver-manager", version: "v0.6.10", imagePullPolicy: "IfNotPresent" });
    // The driver manager evicts GPU pods, so only then do the driver pods get a role; its token is mounted into the manager alone.
    assert.equal(find(objs, "ServiceAccount", "nvidia-driver", NS).automountServiceAccountToken, false);
    assert.deepEqual(find(objs, "ClusterRoleBinding", "gpu-operator-driver-manager").subjects, [{ kind: "ServiceAccount", name: "nvidia-driver", namespace: NS }]);

    // NVIDIA's docs write one secret without braces: --set driver.imagePullSecrets=<pull-secret>.
    const one = find(await helm.template(["--set", "driver.imagePullSecrets=ngc-secret"]), "ClusterPolicy", "cluster-policy").spec.driver;
    assert.deepEqual(one.imagePullSecrets, ["ngc-secret"]);
  });

  test("a wrong value fails helm template, naming the value", async () => {
    const cases: [string, RegExp][] = [
      ["driver.usePrecompiled=yes", /\/driver\/usePrecompiled'?: got string, want boolean/],
      ["driver.upgradePolicy.maxUnavailable=-1", /\/driver\/upgradePolicy\/maxUnavailable/],
      ["driver.kernelModuleType=bogus", /\/driver\/kernelModuleType'?: value must be one of 'auto', 'open', 'proprietary'/],
      ["driver.usePrecompile=true", /additional properties 'usePrecompile' not allowed/],
      ["driver.imagePullSecrets={Not_A_Name}", /\/driver\/imagePullSecrets/],
    ];
    for (const [set, message] of cases) {
      const r = await helm.run(["template", "gpu-operator", chartDir, "--set", set]);
      assert.notEqual(r.code, 0, set);
      assert.match(r.stderr, message, set);
    }
    const r = await helm.run(["template", "gpu-operator", chartDir, "--set", "operator.leaderElection.enabled=false", "--set", "operator.replicas=2"]);
    assert.match(r.stderr, /\/operator\/replicas'?: maximum: got 2, want 1/);
  });
});

describe("installed from a chart repository, with the operator running as the chart's ServiceAccount", () => {
  const chartRef = "gpuop/gpu-operator";

  before(async () => {
    const dir = join(helm.home, "repo");
    await helm.ok(["package", chartDir, "--destination", dir]);
    repo = await serveFolder(dir);
    await helm.ok(["repo", "index", dir, "--url", repo.url]);
  });

  test("helm repo add and search find the packaged chart", async () => {
    assert.match(await helm.ok(["repo", "add", "gpuop", repo!.url]), /"gpuop" has been added/);
    await helm.ok(["repo", "update"]);
    const found = JSON.parse(await helm.ok(["search", "repo", chartRef, "-o", "json"])) as { name: string; version: string; app_version: string }[];
    assert.deepEqual(found.map((c) => [c.name, c.version, c.app_version]), [[chartRef, "0.1.0", "0.1.0"]]);
  });

  test("a schema-invalid value fails helm install and installs nothing", async () => {
    for (const [set, path] of [["driver.usePrecompiled=yes", "/driver/usePrecompiled"], ["driver.upgradePolicy.maxUnavailable=-1", "/driver/upgradePolicy/maxUnavailable"], ["driver.kernelModuleType=bogus", "/driver/kernelModuleType"]] as const) {
      const r = await helm.run(["install", "--wait", RELEASE, "-n", NS, "--create-namespace", chartRef, "--set", set]);
      assert.notEqual(r.code, 0, set);
      assert.ok(r.stderr.includes(path), `${set}: ${r.stderr}`);
    }
    assert.deepEqual(JSON.parse(await helm.ok(["list", "-A", "-a", "-o", "json"])), []);
    assert.equal((await client.list(POLICY_PATH)).items.length, 0);
  });

  test("the seed's helm install gives precompiled driver pods with kernel versions in their names", async () => {
    // As NVIDIA documents it, with `gpuop/` for `nvidia/`; the shell would drop the quotes around "525".
    const out = await helm.ok(["install", "--wait", RELEASE, "-n", NS, "--create-namespace", chartRef, "--set", "driver.usePrecompiled=true", "--set", "driver.version=525"]);
    assert.match(out, /STATUS: deployed/);
    assert.match(out, /kubectl get pods -l app=nvidia-driver-daemonset -n gpu-operator/);
    assert.match(out, /gpuop status/);

    // The operator, as the chart's ServiceAccount: a token and the cluster's CA, nothing else.
    const token = (await cluster.kubectl(["create", "token", "gpu-operator", "-n", NS, "--duration=1h"])).stdout.trim();
    saKubeconfig = join(helm.home, "operator-sa.kubeconfig");
    writeTokenKubeconfig(cluster.kubeconfig, token, saKubeconfig);
    const whoami = (await cluster.kubectl(["--kubeconfig", saKubeconfig, "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"])).stdout;
    assert.equal(whoami, SA);
    // nvcr.io is out of reach here, so no registry check yet (the private registry test turns it on).
    operator = await startOperator({ kubeconfig: saKubeconfig, namespace: NS, env: { KUBECONFIG: saKubeconfig } });

    await waitForDriverPods(client, 2, (p) => /5\.15\.0-(69|70)-generic/.test(p.metadata.name!));
    const names = await kubectlPodNames();
    assert.equal(names.length, 2);
    for (const n of names) assert.match(n, /^nvidia-driver-daemonset-5\.15\.0-(69|70)-generic-ubuntu22\.04-/);
    const images = (await driverDaemonSets(client, NS)).map((d) => podTemplate(d).containers[0]!.image).sort();
    assert.deepEqual(images, ["nvcr.io/nvidia/driver:525-5.15.0-69-generic-ubuntu22.04", "nvcr.io/nvidia/driver:525-5.15.0-70-generic-ubuntu22.04"]);
    // Status patches went through, and the Lease is held by this operator.
    await waitForState(client, "ready");
    const lease = await client.get<{ spec: { holderIdentity?: string } }>(`/apis/coordination.k8s.io/v1/namespaces/${NS}/leases/gpuop-leader`);
    assert.equal(lease.spec.holderIdentity, operator.identity);
    // The driver pods run as the chart's nvidia-driver ServiceAccount.
    for (const p of await driverPods(client, NS)) assert.equal((p.spec as { serviceAccountName?: string }).serviceAccountName, "nvidia-driver");
    assert.doesNotMatch(operator.logs(), /forbidden|\b403\b/i);
  });

  test("the ServiceAccount may do no more than the operator needs", async () => {
    const can = async (...args: string[]) => (await cluster.kubectl(["auth", "can-i", ...args, `--as=${SA}`]).catch((e: { stdout?: string }) => ({ stdout: e.stdout ?? "" }))).stdout.trim();
    assert.equal(await can("patch", "daemonsets", "-n", NS), "yes");
    assert.equal(await can("get", "secrets", "-n", NS), "no");
    // Driver upgrades list a node's pods in every namespace and evict GPU pods; they delete no pod, not even a driver pod.
    assert.equal(await can("list", "pods", "-n", "kube-system"), "yes");
    assert.equal(await can("create", "pods", "--subresource=eviction", "-n", "kube-system"), "yes");
    assert.equal(await can("delete", "pods", "-n", "kube-system"), "no");
    assert.equal(await can("delete", "pods", "-n", NS), "no");
    assert.equal(await can("watch", "pods", "-n", "kube-system"), "no");
    assert.equal(await can("patch", "daemonsets", "-n", "kube-system"), "no");
    assert.equal(await can("delete", "nodes"), "no");
    assert.equal(await can("create", "clusterpolicies.nvidia.com"), "no");
    assert.equal(await can("update", "leases/other-lease", "-n", NS), "no");
  });

  test("a policy problem is recorded as an Event in default (events RBAC)", async () => {
    const uid = (await getPolicy(client)).metadata.uid;
    // Neither NFD's labels nor an OS gpuop can read from nodeInfo: the node cannot be served.
    await createGpuNode(client, { name: NO_NFD_NODE, kernel: "5.15.0-69-generic", os: { id: "cos", versionId: "117", prettyName: "Container-Optimized OS from Google" }, withoutNfdLabels: true, labels: { "nvidia.com/gpu.present": "true" } });
    await eventually("NFDLabelsMissing event", async () => {
      const { items } = await client.list<{ reason?: string; message?: string; involvedObject: { uid?: string }; source?: { component?: string } }>("/api/v1/namespaces/default/events");
      return items.some((e) => e.reason === "NFDLabelsMissing" && e.involvedObject.uid === uid && e.source?.component === "gpuop" && e.message?.includes(NO_NFD_NODE)) ? true : undefined;
    });
    await deleteNodes(client, [NO_NFD_NODE]);
    await waitForState(client, "ready");
    assert.doesNotMatch(operator!.logs(), /could not record event|forbidden/i);
  });

  test("helm upgrade turning precompiled off gives conventional pods without kernel versions", async () => {
    await helm.ok(["upgrade", "--wait", RELEASE, "-n", NS, chartRef, "--set", "driver.usePrecompiled=false"]);
    await waitForDriverPods(client, 2, (p) => !/5\.15\.0/.test(p.metadata.name!));
    for (const n of await kubectlPodNames()) assert.doesNotMatch(n, /5\.15\.0/);
    const daemonSets = await driverDaemonSets(client, NS);
    assert.deepEqual(daemonSets.map((d) => podTemplate(d).containers[0]!.image), ["nvcr.io/nvidia/driver:550.54.15-ubuntu22.04"]);
    assert.equal((await getPolicy(client)).spec?.driver?.usePrecompiled, false);
  });

  test("failed upgrades (refused by the CRD or the schema) leave the previous driver DaemonSets running", async () => {
    const before = await daemonSetIdentities();
    const refused = await helm.run(["upgrade", "--wait", RELEASE, "-n", NS, chartRef, "--set", "driver.usePrecompiled=true", "--set", "driver.version=525.105.17"]);
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /full driver version.*set version to "525"/);
    const invalid = await helm.run(["upgrade", "--wait", RELEASE, "-n", NS, chartRef, "--set", "driver.upgradePolicy.maxUnavailable=-1"]);
    assert.notEqual(invalid.code, 0);
    assert.ok(invalid.stderr.includes("/driver/upgradePolicy/maxUnavailable"), invalid.stderr);

    const policy = await getPolicy(client);
    assert.equal(policy.spec?.driver?.usePrecompiled, false);
    assert.equal(policy.spec?.driver?.version, "550.54.15");
    assert.deepEqual(await daemonSetIdentities(), before);
    await waitForDriverPods(client, 2, (p) => !/5\.15\.0/.test(p.metadata.name!));
  });

  test("a private registry: the pull secret reaches every driver pod, and the operator reads the registry with it", async () => {
    registry = await startRegistry({ auth: "basic", users: { puller: "s3cret-pull" } });
    push = localClient(registry, { username: "puller", password: "s3cret-pull" });
    // Only one of the two kernels' images exists so far.
    await pushImage(push, "private/driver", ["525-5.15.0-69-generic-ubuntu22.04"]);
    await cluster.kubectl(["create", "secret", "docker-registry", "private-pull", "-n", NS, `--docker-server=${registry.host}`, "--docker-username=puller", "--docker-password=s3cret-pull"]);
    // The operator again as the ServiceAccount, now asking the registry before it moves nodes. It starts
    // after the upgrade, so it never asks nvcr.io (unreachable here) about the conventional image.
    await operator!.stop();
    await helm.ok([
      "upgrade", "--wait", RELEASE, "-n", NS, chartRef,
      "--set", "driver.usePrecompiled=true", "--set", "driver.version=525",
      "--set", `driver.repository=${registry.host}/private`,
      "--set", "driver.imagePullSecrets={private-pull}",
    ]);
    operator = await startOperator({ kubeconfig: saKubeconfig, namespace: NS, env: { KUBECONFIG: saKubeconfig }, args: ["--plain-http-registries", registry.host, "--image-recheck-seconds", "1"] });
    // The registry refuses anonymous requests: the missing image is known only through the secret's credentials,
    // so helm-gpu-b keeping its conventional driver shows the operator read the secret.
    const ready = await eventually("PrecompiledImageMissing", async () => {
      const c = (await getPolicy(client)).status?.conditions?.find((x) => x.type === "Ready");
      return c?.reason === "PrecompiledImageMissing" ? c : undefined;
    });
    assert.match(ready.message, /525-5\.15\.0-70-generic-ubuntu22\.04/);
    await waitForDriverPods(client, 2, (p) => (p.spec?.nodeName === "helm-gpu-a" ? p.metadata.name!.includes("5.15.0-69-generic") : !p.metadata.name!.includes("5.15.0")));

    await pushImage(push, "private/driver", ["525-5.15.0-70-generic-ubuntu22.04"]);
    const image = (p: Pod) => (p.spec as { containers: { image: string }[] }).containers[0]!.image;
    const pods = await waitForDriverPods(client, 2, (p) => /5\.15\.0-(69|70)-generic/.test(p.metadata.name!) && image(p).startsWith(`${registry!.host}/private/driver:525-`));
    for (const p of pods) assert.deepEqual((p.spec as { imagePullSecrets?: unknown }).imagePullSecrets, [{ name: "private-pull" }], p.metadata.name);
    const daemonSets = await eventually("only the two precompiled DaemonSets", async () => {
      const list = await driverDaemonSets(client, NS);
      return list.length === 2 ? list : undefined;
    });
    for (const d of daemonSets) {
      assert.deepEqual(podTemplate(d).imagePullSecrets, [{ name: "private-pull" }], d.metadata.name);
      // Pinned to the digest the registry serves for the tag.
      const tag = `${registry.host}/private/driver:525-${d.metadata.name!.replace(/^nvidia-driver-daemonset-/, "")}`;
      assert.ok(podTemplate(d).containers[0]!.image.startsWith(`${tag}@sha256:`), podTemplate(d).containers[0]!.image);
    }
    await waitForState(client, "ready");
    assert.doesNotMatch(operator!.logs(), /cannot read pull secret|cannot check driver image|forbidden/i);
  });

  test("helm uninstall leaves no driver DaemonSet behind and keeps the CRD", async () => {
    // Stop the operator first: the DaemonSets must go through their owner references, not through gpuop.
    await operator!.stop();
    assert.doesNotMatch(operator!.logs(), /forbidden|\b403\b/i);
    operator = undefined;
    await helm.ok(["uninstall", RELEASE, "-n", NS, "--wait"]);
    await eventually("driver DaemonSets garbage-collected", async () => ((await driverDaemonSets(client, NS)).length === 0 ? true : undefined), { timeoutMs: 120_000 });
    await waitForNoDriverPods(client, { ns: NS, timeoutMs: 120_000 });
    assert.equal((await client.list(POLICY_PATH)).items.length, 0);
    await client.get("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/clusterpolicies.nvidia.com");
    assert.deepEqual(JSON.parse(await helm.ok(["list", "-A", "-a", "-o", "json"])), []);
  });
});
