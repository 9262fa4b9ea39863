// The chart with what users bring from NVIDIA's GPU Operator: its chart's values.yaml (a copy
// under test/fixtures/nvidia/), with the real helm. Also the chart values of issue 11: the
// default driver version, the GPU node selector, nfd.enabled and the ServiceMonitor.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parse as parseYaml } from "yaml";
import { chartDir, Helm, type KubeManifest } from "./harness/helm.ts";
import { attachCluster } from "./harness/cluster.ts";
import { crdPath } from "./harness/policy.ts";
import { eventually } from "./harness/wait.ts";
import { repoRoot } from "./harness/tools.ts";
import { OPERANDS, VALIDATOR_DEFAULT_VERSION } from "../src/core/operands/common.ts";
import { renderOperands } from "../src/core/operands/index.ts";

const NS = "gpu-operator";
const nvidiaValues = join(repoRoot, "test/fixtures/nvidia/values.yaml");
let helm: Helm;
let dir: string;

before(() => {
  helm = new Helm(process.env.KUBECONFIG ?? "");
  dir = mkdtempSync(join(tmpdir(), "gpuop-nvidia-values-"));
});

after(() => {
  helm.cleanup();
  rmSync(dir, { recursive: true, force: true });
});

let n = 0;
function valuesFile(values: unknown): string {
  const p = join(dir, `values-${n++}.json`);
  writeFileSync(p, JSON.stringify(values));
  return p;
}

const find = (objs: KubeManifest[], kind: string, name?: string) => objs.filter((o) => o.kind === kind && (name === undefined || o.metadata.name === name)) as (KubeManifest & Record<string, any>)[]; // eslint-disable-line @typescript-eslint/no-explicit-any
const args = (objs: KubeManifest[]) => find(objs, "Deployment", "gpu-operator")[0]!.spec.template.spec.containers[0].args as string[];

/**
 * The install notes, as `helm install` prints them (a client-side dry run, nothing is installed;
 * helm still maps the ClusterPolicy kind, so the CRD must exist).
 */
async function notes(extra: string[] = []): Promise<string> {
  // A namespace of its own: objects other tests left in gpu-operator would stop the dry run.
  const out = await helm.ok(["install", "gpu-operator", chartDir, "--namespace", "nvidia-values-notes", "--dry-run=client", ...extra]);
  return out.slice(out.indexOf("NOTES:"));
}

test("NVIDIA's values.yaml passes the schema; its driver settings reach the ClusterPolicy, gpuPodDeletion as podDeletion", async () => {
  const overrides = valuesFile({ driver: { hostNetwork: true, upgradePolicy: { gpuPodDeletion: { force: true, timeoutSeconds: 123 } } } });
  const objs = await helm.template(["-f", nvidiaValues, "-f", overrides]);
  const nvidia = parseYaml(readFileSync(nvidiaValues, "utf8")) as { driver: { version: string; startupProbe: unknown } };
  const driver = find(objs, "ClusterPolicy", "cluster-policy")[0]!.spec.driver;
  assert.equal(driver.version, nvidia.driver.version);
  assert.deepEqual(driver.startupProbe, nvidia.driver.startupProbe);
  assert.equal(driver.hostNetwork, true);
  assert.deepEqual(driver.upgradePolicy.podDeletion, { force: true, timeoutSeconds: 123, deleteEmptyDir: false });
  assert.equal(driver.upgradePolicy.gpuPodDeletion, undefined, "the CRD has no gpuPodDeletion");
  assert.ok(args(objs).includes(`--default-driver-version=${nvidia.driver.version}`), args(objs).join(" "));
});

test("the operands' values reach the ClusterPolicy as NVIDIA's chart writes them, and the operator renders them", async () => {
  const overrides = valuesFile({
    devicePlugin: { enabled: false, config: { create: true, name: "plugin-configs", default: "a100", data: { a100: "version: v1\n" } } },
    toolkit: { repository: "mirror.example.com/nvidia/k8s", env: [{ name: "CONTAINERD_SET_AS_DEFAULT", value: false }], imagePullSecrets: ["mirror-pull"] },
    dcgmExporter: { version: 4.5, resources: { limits: { memory: "300Mi" } } },
    operator: { runtimeClass: "nvidia-cdi" },
  });
  const objs = await helm.template(["-f", nvidiaValues, "-f", overrides]);
  const spec = find(objs, "ClusterPolicy", "cluster-policy")[0]!.spec;
  assert.equal(spec.devicePlugin.enabled, false);
  assert.deepEqual(spec.devicePlugin.config, { name: "plugin-configs", default: "a100" }, "create and data stay in the chart");
  assert.deepEqual(spec.toolkit.env, [{ name: "CONTAINERD_SET_AS_DEFAULT", value: "false" }]);
  assert.deepEqual(spec.toolkit.imagePullSecrets, ["mirror-pull"]);
  assert.equal(spec.toolkit.repository, "mirror.example.com/nvidia/k8s");
  assert.equal(spec.toolkit.installDir, "/usr/local/nvidia");
  assert.equal(spec.dcgmExporter.version, "4.5");
  assert.deepEqual(spec.dcgmExporter.resources, { limits: { memory: "300Mi" } });
  assert.deepEqual(spec.operator, { runtimeClass: "nvidia-cdi" });
  assert.equal(spec.toolkit.resources, undefined, "empty maps are left out");
  // NVIDIA's validator values name no version (its chart uses its appVersion): the chart's default fills it.
  assert.deepEqual([spec.validator.repository, spec.validator.image, spec.validator.version], ["nvcr.io/nvidia", "gpu-operator", VALIDATOR_DEFAULT_VERSION]);
  assert.deepEqual([spec.migManager, spec.ccManager, spec.vfioManager], [{ enabled: true }, { enabled: true }, undefined], "sandbox operands only with sandboxWorkloads.enabled");
  const cm = find(objs, "ConfigMap", "plugin-configs")[0]!;
  assert.deepEqual(cm.data, { a100: "version: v1\n" });
  // What the operator makes of it: the device plugin off, the images from the values.
  const r = renderOperands({ policy: { apiVersion: "nvidia.com/v1", kind: "ClusterPolicy", metadata: { name: "cluster-policy" }, spec }, namespace: NS });
  assert.deepEqual(r.enabled, ["toolkit", "validator", "gfd", "dcgmExporter"]);
  assert.deepEqual(r.unsupported, ["migManager", "ccManager"]);
  const image = (name: string) => r.daemonSets.find((d) => d.metadata.name === name)!.spec.template.spec.containers[0]!.image;
  assert.equal(image("nvidia-container-toolkit-daemonset"), "mirror.example.com/nvidia/k8s/container-toolkit:v1.20.0");
  assert.equal(image("nvidia-dcgm-exporter"), "nvcr.io/nvidia/k8s/dcgm-exporter:4.5");
  assert.equal(r.daemonSets.find((d) => d.metadata.name === "nvidia-container-toolkit-daemonset")!.spec.template.spec.runtimeClassName, undefined, "the toolkit configures the runtime; it does not run in it");
  assert.equal(r.daemonSets.find((d) => d.metadata.name === "gpu-feature-discovery")!.spec.template.spec.runtimeClassName, "nvidia-cdi");
});

test("the chart's operand images are the operator's defaults; without values the policy asks for the same", async () => {
  const spec = find(await helm.template([]), "ClusterPolicy", "cluster-policy")[0]!.spec;
  for (const o of OPERANDS) {
    const d = o.defaultImage;
    assert.deepEqual([spec[o.key].repository, spec[o.key].image, spec[o.key].version], [d.repository, d.image, d.version], o.key);
  }
  assert.equal(spec.migManager, undefined);
  assert.equal(spec.daemonsets, undefined);
});

test("every value in NVIDIA's values.yaml is declared, with a type, in the chart's schema", () => {
  const schema = JSON.parse(readFileSync(join(chartDir, "values.schema.json"), "utf8")) as Schema;
  const missing: string[] = [];
  const FREE: Schema = {};
  const walk = (value: unknown, s: Schema | undefined, path: string) => {
    if (s === FREE) return;
    if (!s) return void missing.push(path);
    if (value === null || typeof value !== "object" || Array.isArray(value)) {
      if (!s.type && !s.anyOf && value !== null) missing.push(`${path} (no type)`);
      return;
    }
    for (const [k, v] of Object.entries(value)) {
      // A map with no properties (labels, selectors, affinity) is free-form, or typed by additionalProperties.
      const child = s.properties?.[k] ?? (typeof s.additionalProperties === "object" ? s.additionalProperties : s.properties ? undefined : FREE);
      walk(v, child, `${path}.${k}`);
    }
  };
  walk(parseYaml(readFileSync(nvidiaValues, "utf8")), schema, "");
  assert.deepEqual(missing, []);
});

interface Schema {
  type?: string | string[];
  anyOf?: unknown[];
  properties?: Record<string, Schema>;
  additionalProperties?: boolean | Schema;
}

test("bad types in NVIDIA's values are still refused, naming the value's path", async () => {
  for (const [values, path] of [
    [{ dcgmExporter: { enabled: "yes" } }, /dcgmExporter\/enabled|dcgmExporter\.enabled/],
    [{ driver: { upgradePolicy: { gpuPodDeletion: { timeoutSeconds: "soon" } } } }, /gpuPodDeletion\/timeoutSeconds|gpuPodDeletion\.timeoutSeconds/],
    [{ operator: { logging: { develMode: 3 } } }, /logging\/develMode|logging\.develMode/],
    [{ driver: { hostNetwork: "true" } }, /driver\/hostNetwork|driver\.hostNetwork/],
    [{ operator: { metrics: { serviceMonitor: { interval: "often" } } } }, /serviceMonitor\/interval|serviceMonitor\.interval/],
  ] as const) {
    const r = await helm.run(["template", "gpu-operator", chartDir, "--namespace", NS, "-f", nvidiaValues, "-f", valuesFile(values)]);
    assert.notEqual(r.code, 0, JSON.stringify(values));
    assert.match(r.stderr, path, r.stderr);
  }
});

test("the install notes list the given settings gpuop does not act on, and say NFD is not deployed", async () => {
  const cluster = attachCluster(process.env.GPUOP_TEST_CLUSTER ?? "");
  await cluster.kubectl(["apply", "--server-side", "-f", crdPath]);
  const client = cluster.client();
  try {
    // Polled rather than `kubectl wait`, which fails while a new CRD has no conditions yet.
    await eventually("the CRD Established", async () => {
      const crd = await client.get<{ status?: { conditions?: { type: string; status: string }[] } }>("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/clusterpolicies.nvidia.com");
      return crd.status?.conditions?.some((c) => c.type === "Established" && c.status === "True") ? true : undefined;
    });
  } finally {
    await client.close();
  }
  const text = await notes(["-f", nvidiaValues]);
  for (const s of ["migManager", "ccManager", "operator.annotations", "operator.logging"]) {
    assert.match(text, new RegExp(`^  ${s.replace(".", "\\.")}$`, "m"), s);
  }
  // Disabled components and what gpuop acts on are not listed.
  for (const s of ["driver", "operator", "gds", "nodeStatusExporter", "psa", "toolkit", "devicePlugin", "dcgmExporter", "gfd", "validator", "daemonsets", "mig", "operator.runtimeClass"]) assert.doesNotMatch(text, new RegExp(`^  ${s}$`, "m"), s);
  assert.match(text, /nfd.enabled is true, but this chart does not deploy Node Feature Discovery/);
  const own = await notes();
  assert.doesNotMatch(own, /does not act on/);
  assert.doesNotMatch(own, /nfd.enabled is true/);
});

test("operator.defaultDriverVersion and operator.gpuNodeSelector become the operator's flags", async () => {
  assert.ok(args(await helm.template()).includes("--default-driver-version=550.54.15"), "driver.version by default");
  const objs = await helm.template(["--set", "operator.defaultDriverVersion=570.86.15", "--set", "operator.gpuNodeSelector.example\\.com/gpu=yes", "--set", "operator.gpuNodeSelector.pool=a100"]);
  assert.ok(args(objs).includes("--default-driver-version=570.86.15"));
  assert.ok(args(objs).includes("--gpu-node-selector=example.com/gpu=yes,pool=a100"), args(objs).join(" "));
  assert.ok(!args(await helm.template()).some((a) => a.startsWith("--gpu-node-selector")));
  const bad = await helm.run(["template", "gpu-operator", chartDir, "--set", "operator.defaultDriverVersion=latest"]);
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /defaultDriverVersion/);
});

test("operator.metrics.serviceMonitor adds a Service and a ServiceMonitor for /metrics; absent or enabled: false, none", async () => {
  assert.equal(find(await helm.template(), "ServiceMonitor").length, 0);
  assert.equal(find(await helm.template(["--set", "operator.metrics.serviceMonitor.enabled=false", "--set", "operator.metrics.serviceMonitor.interval=30s"]), "ServiceMonitor").length, 0);
  const objs = await helm.template(["--set", "operator.metrics.serviceMonitor.interval=30s", "--set", "operator.metrics.serviceMonitor.additionalLabels.release=prom", "--set", "operator.metricsPort=9400"]);
  const [sm] = find(objs, "ServiceMonitor");
  const [svc] = find(objs, "Service", "gpu-operator-metrics");
  assert.ok(sm && svc);
  assert.equal(sm.metadata.labels?.["release"], "prom");
  assert.deepEqual(sm.spec.endpoints, [{ port: "metrics", path: "/metrics", interval: "30s", honorLabels: false }]);
  assert.deepEqual(sm.spec.namespaceSelector, { matchNames: [NS] });
  // The ServiceMonitor selects the Service, and the Service the operator's pods and their metrics port.
  for (const [k, v] of Object.entries(sm.spec.selector.matchLabels as Record<string, string>)) assert.equal(svc.metadata.labels?.[k], v, k);
  const pod = find(objs, "Deployment", "gpu-operator")[0]!.spec.template;
  for (const [k, v] of Object.entries(svc.spec.selector as Record<string, string>)) assert.equal(pod.metadata.labels[k], v, k);
  assert.deepEqual(svc.spec.ports, [{ name: "metrics", port: 9400, targetPort: "metrics" }]);
  assert.ok((pod.spec.containers[0].ports as { name: string; containerPort: number }[]).some((p) => p.name === "metrics" && p.containerPort === 9400));
});
