import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { parse, parseAllDocuments } from "yaml";
import {
  CLUSTER_POLICY_PATH,
  IMAGE_PULL_POLICIES,
  KERNEL_MODULE_TYPES,
  POLICY_STATES,
  driverSpecDefaults,
  normalizePolicy,
  selectActivePolicy,
  withDefaultDriverVersion,
  upgradePolicyDefaults,
} from "./policy.ts";
import { UserError } from "./errors.ts";

const CRD_PATH = new URL("../../deployments/gpu-operator/crds/nvidia.com_clusterpolicies.yaml", import.meta.url);
const EXAMPLE_PATH = new URL("../../deployments/gpu-operator/examples/cluster-policy.yaml", import.meta.url);

interface Schema {
  type?: string;
  properties?: Record<string, Schema>;
  items?: Schema;
  additionalProperties?: Schema | boolean;
  default?: unknown;
  enum?: unknown[];
  anyOf?: Schema[];
  "x-kubernetes-preserve-unknown-fields"?: boolean;
  "x-kubernetes-int-or-string"?: boolean;
  "x-kubernetes-validations"?: { rule: string; message?: string; messageExpression?: string; fieldPath?: string }[];
}

function loadCrd() {
  const docs = parseAllDocuments(readFileSync(CRD_PATH, "utf8"));
  assert.equal(docs.length, 1);
  const doc = docs[0];
  assert.ok(doc);
  assert.deepEqual(doc.errors, []);
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  return doc.toJS() as any;
}

test("CRD names, scope, version and subresource match NVIDIA's ClusterPolicy", () => {
  const crd = loadCrd();
  assert.equal(crd.apiVersion, "apiextensions.k8s.io/v1");
  assert.equal(crd.kind, "CustomResourceDefinition");
  assert.equal(crd.metadata.name, "clusterpolicies.nvidia.com");
  assert.equal(crd.spec.group, "nvidia.com");
  assert.equal(crd.spec.scope, "Cluster");
  assert.deepEqual(crd.spec.names, {
    kind: "ClusterPolicy",
    listKind: "ClusterPolicyList",
    plural: "clusterpolicies",
    singular: "clusterpolicy",
  });
  assert.equal(CLUSTER_POLICY_PATH, "/apis/nvidia.com/v1/clusterpolicies");
  assert.equal(crd.spec.versions.length, 1);
  const v1 = crd.spec.versions[0];
  assert.equal(v1.name, "v1");
  assert.equal(v1.served, true);
  assert.equal(v1.storage, true);
  assert.deepEqual(v1.subresources, { status: {} });
  const columns = Object.fromEntries(v1.additionalPrinterColumns.map((c: { name: string; jsonPath: string }) => [c.name, c.jsonPath]));
  assert.deepEqual(columns, {
    Status: ".status.state",
    Precompiled: ".spec.driver.usePrecompiled",
    Version: ".spec.driver.version",
    Age: ".metadata.creationTimestamp",
  });
});

test("CRD schema is structural: every node has a type unless it is int-or-string", () => {
  const schema: Schema = loadCrd().spec.versions[0].schema.openAPIV3Schema;
  const untyped: string[] = [];
  const walk = (s: Schema, path: string) => {
    if (s.type === undefined && !s["x-kubernetes-int-or-string"]) untyped.push(path);
    for (const [k, child] of Object.entries(s.properties ?? {})) walk(child, `${path}.${k}`);
    if (s.items) walk(s.items, `${path}[]`);
    if (typeof s.additionalProperties === "object") walk(s.additionalProperties, `${path}{}`);
  };
  walk(schema, "");
  assert.deepEqual(untyped, []);
});

test("CRD keeps NVIDIA's other spec fields and types the driver fields gpuop reads", () => {
  const spec: Schema = loadCrd().spec.versions[0].schema.openAPIV3Schema.properties.spec;
  assert.equal(spec["x-kubernetes-preserve-unknown-fields"], true);
  const driver = spec.properties?.["driver"];
  assert.ok(driver);
  // Typed for what gpuop reads; other fields NVIDIA's releases have had in driver are kept.
  assert.equal(driver["x-kubernetes-preserve-unknown-fields"], true);
  const fields = Object.keys(driver.properties ?? {});
  for (const f of [
    "enabled", "usePrecompiled", "repository", "image", "version", "imagePullPolicy", "imagePullSecrets",
    "kernelModuleType", "env", "args", "resources", "manager", "rdma", "startupProbe", "livenessProbe",
    "readinessProbe", "kernelModuleConfig", "licensingConfig", "upgradePolicy",
    // NVIDIA's remaining driver fields, so their manifests pass strict field validation.
    "useNvidiaDriverCRD", "useOpenKernelModules", "repoConfig", "certConfig", "virtualTopology", "secretEnv",
  ]) {
    assert.ok(fields.includes(f), `spec.driver.${f} missing`);
  }
  for (const c of ["gds", "gdrcopy", "vgpuManager", "vgpuDeviceManager", "sandboxWorkloads"]) {
    assert.equal(spec.properties?.[c]?.properties?.["enabled"]?.type, "boolean", c);
  }
  const upgrade = driver.properties?.["upgradePolicy"]?.properties;
  assert.equal(upgrade?.["maxUnavailable"]?.["x-kubernetes-int-or-string"], true);
  for (const f of ["autoUpgrade", "maxParallelUpgrades", "podDeletion", "waitForCompletion", "drain"]) {
    assert.ok(upgrade?.[f], `upgradePolicy.${f} missing`);
  }
});

test("CRD defaults and enums equal the TypeScript ones", () => {
  const driver: Schema = loadCrd().spec.versions[0].schema.openAPIV3Schema.properties.spec.properties.driver;
  const p = driver.properties ?? {};
  assert.deepEqual(driver.default, {});
  for (const [field, value] of Object.entries(driverSpecDefaults)) {
    assert.equal(p[field]?.default, value, `default of spec.driver.${field}`);
  }
  assert.deepEqual(p["kernelModuleType"]?.enum, [...KERNEL_MODULE_TYPES]);
  assert.deepEqual(p["imagePullPolicy"]?.enum, [...IMAGE_PULL_POLICIES]);
  const upgrade = p["upgradePolicy"]?.properties ?? {};
  for (const [field, value] of Object.entries(upgradePolicyDefaults)) {
    assert.equal(upgrade[field]?.default, value, `default of upgradePolicy.${field}`);
  }
});

test("CRD has CEL rules for digest and full versions and GDS/GDRCopy with precompiled", () => {
  const spec: Schema = loadCrd().spec.versions[0].schema.openAPIV3Schema.properties.spec;
  const rules = spec["x-kubernetes-validations"] ?? [];
  const find = (needle: string) => rules.find((r) => r.rule.includes(needle));
  const digest = find("startsWith('sha256:')");
  const full = find(".matches(");
  const gds = find("self.gds.enabled");
  const gdrcopy = find("self.gdrcopy.enabled");
  for (const r of [digest, full, gds, gdrcopy]) {
    assert.ok(r);
    assert.ok(r.rule.includes("self.driver.usePrecompiled"), r.rule);
    assert.match(r.message ?? "", /set /, "message says what to change");
  }
  // The full-version pattern is plain enough that RE2 and JS agree; check it separates branches.
  const pattern = /matches\('([^']+)'\)/.exec(full?.rule ?? "")?.[1];
  assert.ok(pattern);
  const re = new RegExp(pattern);
  for (const v of ["525.105.17", "550.54.15", "535.54"]) assert.ok(re.test(v), v);
  for (const v of ["525", "550", "latest"]) assert.ok(!re.test(v), v);
});

test("CRD status has state, conditions, observedGeneration and pools", () => {
  const status: Schema = loadCrd().spec.versions[0].schema.openAPIV3Schema.properties.status;
  const p = status.properties ?? {};
  assert.deepEqual(p["state"]?.enum, [...POLICY_STATES]);
  assert.equal(p["namespace"]?.type, "string");
  assert.equal(p["observedGeneration"]?.type, "integer");
  const condition = p["conditions"]?.items?.properties ?? {};
  for (const f of ["type", "status", "observedGeneration", "lastTransitionTime", "reason", "message"]) {
    assert.ok(condition[f], `conditions[].${f}`);
  }
  const pool = p["pools"]?.items?.properties ?? {};
  for (const f of ["name", "kernel", "osTag", "image", "precompiled", "nodes", "desired", "readyPods"]) {
    assert.ok(pool[f], `pools[].${f}`);
  }
});

test("the example policy is conventional, named cluster-policy, and normalizes", () => {
  const example = parse(readFileSync(EXAMPLE_PATH, "utf8"));
  assert.equal(example.apiVersion, "nvidia.com/v1");
  assert.equal(example.kind, "ClusterPolicy");
  const p = normalizePolicy(example);
  assert.equal(p.metadata.name, "cluster-policy");
  assert.equal(p.spec.driver.usePrecompiled, false);
  assert.equal(p.spec.driver.version, "550.54.15");
  assert.equal(p.spec.driver.repository, "nvcr.io/nvidia");
});

test("normalizePolicy applies the schema's defaults and keeps the rest", () => {
  const raw = {
    apiVersion: "nvidia.com/v1",
    kind: "ClusterPolicy",
    metadata: { name: "cluster-policy" },
    spec: { toolkit: { enabled: true }, driver: { version: "525", rdma: { enabled: true }, upgradePolicy: { drain: { enable: true } } } },
  };
  const p = normalizePolicy(raw);
  assert.equal(p.spec.driver.enabled, true);
  assert.equal(p.spec.driver.usePrecompiled, false);
  assert.equal(p.spec.driver.image, "driver");
  assert.equal(p.spec.driver.kernelModuleType, "auto");
  assert.equal(p.spec.driver.version, "525");
  assert.deepEqual(p.spec.driver.rdma, { enabled: true, useHostMofed: false });
  assert.deepEqual(p.spec.driver.upgradePolicy, {
    autoUpgrade: true,
    maxParallelUpgrades: 1,
    maxUnavailable: "25%",
    drain: { enable: true, force: false, timeoutSeconds: 300, deleteEmptyDir: false },
  });
  assert.deepEqual(p.spec["toolkit"], { enabled: true });
  assert.equal(p.apiVersion, "nvidia.com/v1");
  // Input untouched, output idempotent.
  assert.deepEqual(raw.spec.driver, { version: "525", rdma: { enabled: true }, upgradePolicy: { drain: { enable: true } } });
  assert.deepEqual(normalizePolicy(p), p);
});

test("normalizePolicy fills a missing spec and keeps explicit values", () => {
  const p = normalizePolicy({ metadata: { name: "p" } });
  assert.deepEqual(p.spec.driver, driverSpecDefaults);
  const q = normalizePolicy({ metadata: { name: "p" }, spec: { driver: { enabled: false, image: "my-driver", kernelModuleType: "open" } } });
  assert.equal(q.spec.driver.enabled, false);
  assert.equal(q.spec.driver.image, "my-driver");
  assert.equal(q.spec.driver.kernelModuleType, "open");
});

test("normalizePolicy names the field with the wrong type", () => {
  const bad = (spec: unknown, field: RegExp) =>
    assert.throws(() => normalizePolicy({ metadata: { name: "p" }, spec }), (e: unknown) => e instanceof UserError && field.test(e.message));
  bad({ driver: { usePrecompiled: "true" } }, /spec\.driver\.usePrecompiled must be a boolean/);
  bad({ driver: { version: 525 } }, /spec\.driver\.version must be a string/);
  bad({ driver: { kernelModuleType: "closed" } }, /spec\.driver\.kernelModuleType .*auto, open, proprietary/);
  bad({ driver: { imagePullSecrets: "regcred" } }, /imagePullSecrets must be a list of strings/);
  bad({ driver: { env: [{ value: "x" }] } }, /spec\.driver\.env/);
  bad({ driver: { startupProbe: { periodSeconds: -1 } } }, /startupProbe\.periodSeconds/);
  bad({ gds: { enabled: "yes" } }, /spec\.gds\.enabled must be a boolean/);
  bad("x", /spec must be an object/);
  assert.throws(() => normalizePolicy({ spec: {} }), /metadata\.name/);
  assert.throws(() => normalizePolicy(null), UserError);
});

test("selectActivePolicy picks the oldest, then the lowest name", () => {
  const p = (name: string, creationTimestamp?: string) => ({ metadata: creationTimestamp ? { name, creationTimestamp } : { name } });
  assert.equal(selectActivePolicy([]), undefined);
  const a = p("b", "2024-01-01T00:00:00Z");
  const b = p("a", "2024-01-02T00:00:00Z");
  const c = p("a", "2024-01-01T00:00:00Z");
  assert.equal(selectActivePolicy([a, b, c]), c);
  assert.equal(selectActivePolicy([b, a]), a);
  assert.equal(selectActivePolicy([p("z"), b]), b);
  assert.equal(selectActivePolicy([p("z"), p("y")])?.metadata.name, "y");
});

test("withDefaultDriverVersion fills in the operator's default only where the policy names no version", () => {
  const p = (driver?: Record<string, unknown>) => ({ metadata: { name: "cluster-policy" }, ...(driver ? { spec: { driver } } : {}) });
  assert.equal(withDefaultDriverVersion(p(), "570.86.15").spec?.driver?.version, "570.86.15");
  assert.equal(withDefaultDriverVersion(p({ version: "" }), "570.86.15").spec?.driver?.version, "570.86.15");
  assert.equal(withDefaultDriverVersion(p({ version: "535.104.05" }), "570.86.15").spec?.driver?.version, "535.104.05");
  assert.equal(withDefaultDriverVersion(p({ usePrecompiled: true }), "570.86.15").spec?.driver?.version, "570", "precompiled takes the branch");
  assert.equal(withDefaultDriverVersion(p({ usePrecompiled: true }), "560").spec?.driver?.version, "560");
  assert.equal(withDefaultDriverVersion(p({ repository: "r" }), "570.86.15").spec?.driver?.repository, "r", "the rest of the driver spec is kept");
  assert.equal(withDefaultDriverVersion(p(), "570.86.15").spec?.driver?.repository, "nvcr.io/nvidia", "NVIDIA's default image's repository");
  assert.equal(withDefaultDriverVersion(p({ image: "registry.example.com/gpu/driver" }), "570.86.15").spec?.driver?.repository, undefined, "a full image name keeps no repository");
  assert.equal(withDefaultDriverVersion(p({ version: "535.104.05" }), "570.86.15").spec?.driver?.repository, undefined, "nothing is defaulted when the policy names a version");
  assert.equal(withDefaultDriverVersion(p(), undefined).spec?.driver?.version, undefined);
  const bad = { metadata: { name: "x" }, spec: { driver: "nope" } } as unknown as Parameters<typeof withDefaultDriverVersion>[0];
  assert.equal(withDefaultDriverVersion(bad, "570.86.15"), bad, "a malformed spec is left for validation to report");
});
