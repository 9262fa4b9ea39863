import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { parse, parseAllDocuments } from "yaml";
import {
  CLUSTER_POLICY_API_VERSION,
  CLUSTER_POLICY_GROUP,
  CLUSTER_POLICY_KIND,
  CLUSTER_POLICY_PATH,
  CLUSTER_POLICY_PLURAL,
  CLUSTER_POLICY_VERSION,
  DEFAULT_DRIVER_REPOSITORY,
  rdmaDefaults,
  IMAGE_PULL_POLICIES,
  KERNEL_MODULE_TYPES,
  POLICY_STATES,
  driverSpecDefaults,
  normalizePolicy,
  selectActivePolicy,
  withDefaultDriverVersion,
  policySpecKey,
  upgradePolicyDefaults,
  type DriverSpec,
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

// The exact messages below are what `gpuop` and the status print: each names the field and its bad value.
const rejects = (obj: unknown, message: string) =>
  assert.throws(() => normalizePolicy(obj), (e: unknown) => e instanceof UserError && e.message === message, message);
const withDriver = (driver: unknown) => ({ metadata: { name: "p" }, spec: { driver } });

test("normalizePolicy: the object, its name, spec and driver must have the right shape", () => {
  rejects(null, "ClusterPolicy must be an object");
  rejects([], "ClusterPolicy must be an object");
  rejects("policy", "ClusterPolicy must be an object");
  const noName = "ClusterPolicy has no metadata.name: give the policy a name, e.g. cluster-policy";
  rejects({}, noName);
  rejects({ metadata: [] }, noName);
  rejects({ metadata: { name: 7 } }, noName);
  rejects({ metadata: { name: "" } }, noName);
  rejects({ metadata: { name: "p" }, spec: [] }, "ClusterPolicy spec must be an object");
  rejects(withDriver([]), "spec.driver must be an object");
  rejects(withDriver("x"), "spec.driver must be an object");
  // A null spec is no spec: the defaults apply.
  assert.deepEqual(normalizePolicy({ metadata: { name: "p" }, spec: null }).spec.driver, driverSpecDefaults);
});

test("normalizePolicy checks every typed driver field, by name", () => {
  for (const f of ["enabled", "usePrecompiled", "useNvidiaDriverCRD", "useOpenKernelModules", "hostNetwork"]) {
    rejects(withDriver({ [f]: "yes" }), `spec.driver.${f} must be a boolean, not "yes"`);
  }
  for (const f of ["repository", "image", "version", "secretEnv"]) {
    rejects(withDriver({ [f]: true }), `spec.driver.${f} must be a string, not true`);
  }
  rejects(withDriver({ imagePullPolicy: "Sometimes" }), 'spec.driver.imagePullPolicy is "Sometimes": use one of Always, IfNotPresent, Never');
  rejects(withDriver({ kernelModuleType: "closed" }), 'spec.driver.kernelModuleType is "closed": use one of auto, open, proprietary');
  rejects(withDriver({ imagePullSecrets: ["a", 1] }), 'spec.driver.imagePullSecrets must be a list of strings, not ["a",1]');
  rejects(withDriver({ args: "--x" }), 'spec.driver.args must be a list of strings, not "--x"');
  rejects(withDriver({ args: [true] }), "spec.driver.args must be a list of strings, not [true]");
  for (const f of ["resources", "manager", "rdma", "startupProbe", "livenessProbe", "readinessProbe", "kernelModuleConfig", "upgradePolicy"]) {
    rejects(withDriver({ [f]: "x" }), `spec.driver.${f} must be an object`);
    rejects(withDriver({ [f]: [] }), `spec.driver.${f} must be an object`);
  }
  rejects(withDriver({ kernelModuleConfig: { name: 3 } }), "spec.driver.kernelModuleConfig.name must be a string, not 3");
  for (const f of ["enabled", "useHostMofed"]) rejects(withDriver({ rdma: { [f]: 1 } }), `spec.driver.rdma.${f} must be a boolean, not 1`);
  // Every field of a valid driver passes, values other than the defaults included.
  const ok = {
    enabled: false, usePrecompiled: true, useNvidiaDriverCRD: false, useOpenKernelModules: true, hostNetwork: true,
    repository: "r", image: "i", version: "550", secretEnv: "s", imagePullPolicy: "Never", kernelModuleType: "proprietary",
    imagePullSecrets: ["a", "b"], args: ["--x"], env: [{ name: "A", value: "1" }, { name: "B" }], resources: {},
    manager: { repository: "m", image: "mi", version: "v", imagePullPolicy: "Always", imagePullSecrets: ["c"], env: [{ name: "C", value: "" }] },
    rdma: { enabled: true, useHostMofed: true }, startupProbe: { initialDelaySeconds: 0 }, kernelModuleConfig: { name: "k" },
  };
  assert.deepEqual(normalizePolicy(withDriver(ok)).spec.driver, ok);
});

test("normalizePolicy checks env lists: names present and non-empty, values strings", () => {
  const msg = (v: unknown) => `spec.driver.env must be a list of {name, value} with string values, not ${JSON.stringify(v)}`;
  for (const env of [{ name: "A" }, ["A=1"], [null], [{ value: "1" }], [{ name: "" }], [{ name: 1 }], [{ name: "A", value: 1 }], [{ name: "A" }, { name: "" }]]) {
    rejects(withDriver({ env }), msg(env));
  }
  assert.deepEqual(normalizePolicy(withDriver({ env: [] })).spec.driver.env, []);
});

test("normalizePolicy checks the manager's fields under spec.driver.manager", () => {
  for (const f of ["repository", "image", "version"]) {
    rejects(withDriver({ manager: { [f]: 1 } }), `spec.driver.manager.${f} must be a string, not 1`);
  }
  rejects(withDriver({ manager: { imagePullPolicy: "Maybe" } }), 'spec.driver.manager.imagePullPolicy is "Maybe": use one of Always, IfNotPresent, Never');
  rejects(withDriver({ manager: { imagePullSecrets: "s" } }), 'spec.driver.manager.imagePullSecrets must be a list of strings, not "s"');
  rejects(withDriver({ manager: { env: [{ name: "" }] } }), 'spec.driver.manager.env must be a list of {name, value} with string values, not [{"name":""}]');
});

test("normalizePolicy: probe fields are whole numbers of at least 0", () => {
  for (const p of ["startupProbe", "livenessProbe", "readinessProbe"]) {
    for (const f of ["initialDelaySeconds", "timeoutSeconds", "periodSeconds", "successThreshold", "failureThreshold"]) {
      rejects(withDriver({ [p]: { [f]: -1 } }), `spec.driver.${p}.${f} must be a whole number of at least 0, not -1`);
      rejects(withDriver({ [p]: { [f]: 1.5 } }), `spec.driver.${p}.${f} must be a whole number of at least 0, not 1.5`);
      rejects(withDriver({ [p]: { [f]: "5" } }), `spec.driver.${p}.${f} must be a whole number of at least 0, not "5"`);
      assert.equal(normalizePolicy(withDriver({ [p]: { [f]: 0 } })).spec.driver[p as "startupProbe"]?.[f as "periodSeconds"], 0);
    }
  }
});

test("normalizePolicy checks the upgrade policy, selectors included", () => {
  const at = "spec.driver.upgradePolicy";
  const up = (u: unknown) => withDriver({ upgradePolicy: u });
  rejects(up({ autoUpgrade: "false" }), `${at}.autoUpgrade must be a boolean, not "false"`);
  rejects(up({ maxParallelUpgrades: -1 }), `${at}.maxParallelUpgrades must be a whole number of at least 0, not -1`);
  rejects(up({ maxParallelUpgrades: 2.5 }), `${at}.maxParallelUpgrades must be a whole number of at least 0, not 2.5`);
  for (const part of ["podDeletion", "waitForCompletion", "drain"]) {
    rejects(up({ [part]: "x" }), `${at}.${part} must be an object`);
    rejects(up({ [part]: { timeoutSeconds: -5 } }), `${at}.${part}.timeoutSeconds must be a whole number of at least 0, not -5`);
    for (const f of ["force", "deleteEmptyDir", "enable"]) rejects(up({ [part]: { [f]: "no" } }), `${at}.${part}.${f} must be a boolean, not "no"`);
    rejects(up({ [part]: { podSelector: 1 } }), `${at}.${part}.podSelector must be a string, not 1`);
    rejects(up({ [part]: { podSelector: "app in (a" } }), `${at}.${part}.podSelector "app in (a" is not a label selector: write it as kubectl -l takes it, e.g. "app=training,tier!=web"`);
    assert.equal(normalizePolicy(up({ [part]: { podSelector: "app=training,tier!=web", timeoutSeconds: 0 } })).spec.driver.upgradePolicy?.[part as "drain"]?.podSelector, "app=training,tier!=web");
  }
  assert.equal(normalizePolicy(up({ maxParallelUpgrades: 0 })).spec.driver.upgradePolicy?.maxParallelUpgrades, 0, "0 is no limit, not an error");
});

test("normalizePolicy defaults each upgrade part only where given, keeping explicit values", () => {
  const p = normalizePolicy(withDriver({ upgradePolicy: { autoUpgrade: false, maxParallelUpgrades: 3, maxUnavailable: 2, podDeletion: {}, waitForCompletion: {} } }));
  assert.deepEqual(p.spec.driver.upgradePolicy, {
    autoUpgrade: false,
    maxParallelUpgrades: 3,
    maxUnavailable: 2,
    podDeletion: { force: false, timeoutSeconds: 300, deleteEmptyDir: false },
    waitForCompletion: { timeoutSeconds: 0 },
  });
  const q = normalizePolicy(withDriver({ upgradePolicy: { podDeletion: { force: true, timeoutSeconds: 60, deleteEmptyDir: true }, waitForCompletion: { timeoutSeconds: 90, podSelector: "a=b" }, drain: { enable: true, force: true, timeoutSeconds: 45, deleteEmptyDir: true, podSelector: "x" } } }));
  assert.deepEqual(q.spec.driver.upgradePolicy, {
    ...upgradePolicyDefaults,
    podDeletion: { force: true, timeoutSeconds: 60, deleteEmptyDir: true },
    waitForCompletion: { timeoutSeconds: 90, podSelector: "a=b" },
    drain: { enable: true, force: true, timeoutSeconds: 45, deleteEmptyDir: true, podSelector: "x" },
  });
  assert.deepEqual(normalizePolicy(withDriver({ upgradePolicy: { drain: {} } })).spec.driver.upgradePolicy?.drain, { enable: false, force: false, timeoutSeconds: 300, deleteEmptyDir: false }, "an empty drain section drains nothing");
  assert.deepEqual(normalizePolicy(withDriver({ rdma: { useHostMofed: true } })).spec.driver.rdma, { enabled: false, useHostMofed: true });
  const plain = normalizePolicy(withDriver({}));
  assert.equal("rdma" in plain.spec.driver, false, "no rdma section is made up");
  assert.equal("upgradePolicy" in plain.spec.driver, false, "no upgrade policy is made up");
});

test("normalizePolicy checks NVIDIA's components gpuop must know about, by name", () => {
  for (const c of ["gds", "gdrcopy", "vgpuManager", "vgpuDeviceManager", "sandboxWorkloads"]) {
    rejects({ metadata: { name: "p" }, spec: { [c]: "on" } }, `spec.${c} must be an object`);
    rejects({ metadata: { name: "p" }, spec: { [c]: { enabled: "true" } } }, `spec.${c}.enabled must be a boolean, not "true"`);
    assert.deepEqual(normalizePolicy({ metadata: { name: "p" }, spec: { [c]: { enabled: true, extra: 1 } } }).spec[c], { enabled: true, extra: 1 });
  }
  // Other operands are not checked here (the operand controller reads them).
  assert.deepEqual(normalizePolicy({ metadata: { name: "p" }, spec: { toolkit: "anything" } }).spec["toolkit"], "anything");
});

test("normalizePolicy returns a frozen copy: the result cannot be changed, the input stays the caller's", () => {
  const raw = { metadata: { name: "p", labels: { a: "b" } }, spec: { toolkit: { enabled: true }, driver: { env: [{ name: "A", value: "1" }], upgradePolicy: { drain: { enable: true } } } } };
  const p = normalizePolicy(raw);
  assert.throws(() => ((p.spec["toolkit"] as { enabled: boolean }).enabled = false), TypeError);
  assert.throws(() => (p.spec.driver.env![0]!.value = "2"), TypeError);
  assert.throws(() => (p.spec.driver.upgradePolicy!.drain!.enable = false), TypeError);
  assert.throws(() => (p.metadata.labels!["a"] = "c"), TypeError);
  assert.deepEqual(raw, { metadata: { name: "p", labels: { a: "b" } }, spec: { toolkit: { enabled: true }, driver: { env: [{ name: "A", value: "1" }], upgradePolicy: { drain: { enable: true } } } } });
  // The input is not frozen, and a changed input is normalized again, not answered from a memo.
  raw.spec.driver.env[0]!.value = "3";
  assert.equal(normalizePolicy(raw).spec.driver.env![0]!.value, "3");
  assert.notEqual(normalizePolicy(raw), normalizePolicy(raw));
});

test("normalizing a normalized policy returns it: a controller normalizes once per policy change", () => {
  const p = normalizePolicy({ metadata: { name: "p" }, spec: { driver: { version: "570" } } });
  assert.equal(normalizePolicy(p), p);
  // A structural copy is not one of normalizePolicy's results: it is normalized again.
  const copy = structuredClone(p);
  assert.notEqual(normalizePolicy(copy), copy);
  assert.deepEqual(normalizePolicy(copy), p);
});

test("the ClusterPolicy API names are NVIDIA's", () => {
  assert.equal(CLUSTER_POLICY_GROUP, "nvidia.com");
  assert.equal(CLUSTER_POLICY_VERSION, "v1");
  assert.equal(CLUSTER_POLICY_API_VERSION, "nvidia.com/v1");
  assert.equal(CLUSTER_POLICY_KIND, "ClusterPolicy");
  assert.equal(CLUSTER_POLICY_PLURAL, "clusterpolicies");
  assert.equal(DEFAULT_DRIVER_REPOSITORY, "nvcr.io/nvidia");
  assert.deepEqual(rdmaDefaults, { enabled: false, useHostMofed: false });
});

test("selectActivePolicy: a policy without a valid timestamp comes last; ties keep the first listed", () => {
  const p = (name: string, creationTimestamp?: string) => ({ metadata: creationTimestamp ? { name, creationTimestamp } : { name } });
  const stored = p("z", "2024-03-01T00:00:00Z");
  assert.equal(selectActivePolicy([p("a", "not a date"), stored]), stored);
  assert.equal(selectActivePolicy([p("a", ""), stored]), stored);
  assert.equal(selectActivePolicy([stored, p("a")]), stored);
  const newer = p("a", "2024-03-02T00:00:00Z");
  assert.equal(selectActivePolicy([newer, stored]), stored);
  assert.equal(selectActivePolicy([stored, newer]), stored);
  const twinA = p("same", "2024-03-01T00:00:00Z");
  const twinB = p("same", "2024-03-01T00:00:00Z");
  assert.equal(selectActivePolicy([twinA, twinB]), twinA);
  assert.equal(selectActivePolicy([twinB, twinA]), twinB);
  assert.equal(selectActivePolicy([p("b"), p("a"), p("c")])?.metadata.name, "a");
});

test("withDefaultDriverVersion: what it keeps and what it fills", () => {
  const policy = { metadata: { name: "cp", labels: { l: "v" } }, spec: { toolkit: { enabled: false }, driver: { usePrecompiled: false, imagePullPolicy: "Never" as const } } };
  const out = withDefaultDriverVersion(policy, "570.86.15");
  assert.deepEqual(out, { metadata: { name: "cp", labels: { l: "v" } }, spec: { toolkit: { enabled: false }, driver: { usePrecompiled: false, imagePullPolicy: "Never", version: "570.86.15", repository: "nvcr.io/nvidia" } } });
  assert.deepEqual(policy.spec.driver, { usePrecompiled: false, imagePullPolicy: "Never" }, "the input is not changed");
  // No default, or a version already named: the very same object back.
  assert.equal(withDefaultDriverVersion(policy, ""), policy);
  const named = { metadata: { name: "cp" }, spec: { driver: { version: "535.104.05" } } };
  assert.equal(withDefaultDriverVersion(named, "570.86.15"), named);
  const badSpec = { metadata: { name: "x" }, spec: "nope" } as unknown as Parameters<typeof withDefaultDriverVersion>[0];
  assert.equal(withDefaultDriverVersion(badSpec, "570.86.15"), badSpec);
  // An empty repository is none; a plain image name other than the default still gets NVIDIA's repository.
  assert.equal(withDefaultDriverVersion({ metadata: { name: "cp" }, spec: { driver: { repository: "" } } }, "570.86.15").spec?.driver?.repository, "nvcr.io/nvidia");
  assert.equal(withDefaultDriverVersion({ metadata: { name: "cp" }, spec: { driver: { image: "my-driver" } as DriverSpec } }, "570.86.15").spec?.driver?.repository, "nvcr.io/nvidia");
  // Precompiled with a default that is already a branch, or not precompiled: the value as given.
  assert.equal(withDefaultDriverVersion({ metadata: { name: "cp" }, spec: { driver: { usePrecompiled: false } as DriverSpec } }, "570.86.15").spec?.driver?.version, "570.86.15");
});

// Surviving mutants in policy.ts, each equivalent: comparePolicyAge's `ta < tb` -> `<=` (reached only when they differ),
// and its name tie-break's `a > b ? 1 : 0` (-> true, false, `>=`, `<=`): selectActivePolicy only asks whether the
// result is below 0, and that part is reached only when a's name is not below b's.

test("policySpecKey: the same through status and resourceVersion changes, different for any change of spec, labels, annotations or identity", () => {
  const base = { metadata: { name: "cluster-policy", uid: "u-1", generation: 4, resourceVersion: "100", labels: { team: "gpu" }, annotations: { note: "a" } }, spec: { driver: { version: "580", usePrecompiled: true } }, status: { state: "ready" } };
  const key = policySpecKey(base);
  const statusWritten = { ...base, metadata: { ...base.metadata, resourceVersion: "101" }, status: { state: "notReady" } };
  assert.equal(policySpecKey(statusWritten), key);
  const changed = [
    { ...base, spec: { driver: { version: "580", usePrecompiled: false } } },
    { ...base, metadata: { ...base.metadata, generation: 5 } },
    { ...base, metadata: { ...base.metadata, uid: "u-2" } },
    { ...base, metadata: { ...base.metadata, name: "other" } },
    { ...base, metadata: { ...base.metadata, labels: { team: "ml" } } },
    { ...base, metadata: { ...base.metadata, annotations: {} } },
  ];
  for (const c of changed) assert.notEqual(policySpecKey(c), key, JSON.stringify(c));
});
