import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { readFileSync } from "node:fs";
import { ENTRYPOINT_VARIABLES, forbiddenEnvReason, parseRestrictedNodeLabel, RepositoryAllowList, restrictedNodes, stripControl } from "./security.ts";
import { validatePolicy } from "./validate.ts";
import { UserError } from "./errors.ts";
import { MANAGER_TOKEN_VOLUME, renderDriverDaemonSets } from "./render.ts";
import type { ClusterPolicy, DriverSpec } from "./policy.ts";
import { gpuNodeObject } from "../../test/harness/nodes.ts";

const nodes = [gpuNodeObject({ name: "gpu-1", kernel: "5.15.0-69-generic", os: { id: "ubuntu", versionId: "22.04" }, arch: "amd64" })];
const policy = (driver: DriverSpec): ClusterPolicy => ({ metadata: { name: "cluster-policy" }, spec: { driver: { repository: "nvcr.io/nvidia", version: "550.54.15", ...driver } } });
const reasons = (p: ClusterPolicy, allowed?: string[]) =>
  validatePolicy(p, nodes, allowed ? { allowedRepositories: new RepositoryAllowList(allowed) } : {}).errors.map((e) => e.reason);

test("driver.env may not set PATH, LD_*, shell hooks or the entrypoint's own variables", () => {
  for (const name of ["PATH", "LD_PRELOAD", "LD_LIBRARY_PATH", "BASH_ENV", "SHELLOPTS", "PS4", "BASH_FUNC_modprobe%%", "STARTUP_PROBE", "ROOT", "DAEMON_STOP_TIMEOUT", "SYSFS_ROOT"]) {
    const v = validatePolicy(policy({ env: [{ name: "NVIDIA_OK", value: "1" }, { name, value: "/tmp/x" }] }), nodes);
    assert.deepEqual(v.errors.map((e) => e.reason), ["ForbiddenEnv"], name);
    assert.equal(v.errors[0]?.field, "spec.driver.env");
    assert.match(v.errors[0]?.message ?? "", new RegExp(`sets "${name.replace(/[$%]/g, "\\$&")}".*remove it from spec\\.driver\\.env`));
  }
  // Ordinary driver settings stay allowed (NVIDIA's docs set some of these).
  for (const name of ["NVIDIA_VISIBLE_DEVICES", "KERNEL_MODULE_TYPE", "GPU_DIRECT_RDMA_ENABLED", "MY_PATH", "XLD_PRELOAD"]) {
    assert.deepEqual(reasons(policy({ env: [{ name, value: "x" }] })), [], name);
  }
  // The manager has its own image: the entrypoint's names mean nothing there, the loader's do.
  assert.deepEqual(reasons(policy({ manager: { image: "k8s-driver-manager", repository: "nvcr.io/nvidia/cloud-native", version: "v0.6.8", env: [{ name: "ROOT", value: "/" }] } })), []);
  assert.deepEqual(reasons(policy({ manager: { image: "k8s-driver-manager", repository: "nvcr.io/nvidia/cloud-native", version: "v0.6.8", env: [{ name: "LD_AUDIT", value: "x" }] } })), ["ForbiddenEnv"]);
});

test("the entrypoint's variable list covers every setting the driver entrypoint reads with a default", () => {
  const script = readFileSync(new URL("../../images/driver/common/nvidia-driver", import.meta.url), "utf8");
  // `NAME=${NAME:-default}`: a variable the entrypoint takes from its environment. Host paths
  // are fixed in the script (tests reach a fake root through use_root), so few remain.
  const overridable = [...script.matchAll(/^\s*([A-Z_][A-Z0-9_]*)=\$\{\1:-/gm)].map((m) => m[1]!);
  assert.ok(overridable.includes("DAEMON_STOP_TIMEOUT"), `found ${overridable.join(", ")}`);
  for (const name of overridable) assert.ok(forbiddenEnvReason(name, "driver") !== undefined, `${name} is not refused`);
  for (const name of ENTRYPOINT_VARIABLES) assert.ok(forbiddenEnvReason(name, "driver"));
});

test("allow-list: off by default; on, every rendered image must lie under an entry", () => {
  assert.deepEqual(reasons(policy({ repository: "evil.example.com/x" })), []);
  const allowed = ["nvcr.io/nvidia", "registry.example.com:5000"];
  assert.deepEqual(reasons(policy({}), allowed), []);
  assert.deepEqual(reasons(policy({ repository: "registry.example.com:5000/team" }), allowed), []);
  const v = validatePolicy(policy({ repository: "evil.example.com/nvidia" }), nodes, { allowedRepositories: new RepositoryAllowList(allowed) });
  assert.deepEqual(v.errors.map((e) => e.reason), ["ImageNotAllowed"]);
  assert.equal(v.errors[0]?.field, "spec.driver.repository");
  assert.match(v.errors[0]?.message ?? "", /evil\.example\.com\/nvidia\/driver.*outside the operator's allowed image repositories \(nvcr\.io\/nvidia, registry\.example\.com:5000\)/);
  // A prefix of a path component is not the repository: nvcr.io/nvidia-evil is not under nvcr.io/nvidia.
  assert.deepEqual(reasons(policy({ repository: "nvcr.io/nvidia-evil" }), allowed), ["ImageNotAllowed"]);
  // The manager image is checked too.
  const manager = { image: "k8s-driver-manager", repository: "docker.io/someone", version: "v1" };
  assert.deepEqual(reasons(policy({ manager }), allowed), ["ImageNotAllowed"]);
  assert.deepEqual(reasons(policy({ manager }), [...allowed, "docker.io/someone/k8s-driver-manager"]), []);
  // With no GPU node nothing renders, and the names are still checked.
  assert.deepEqual(validatePolicy(policy({ repository: "evil.example.com/nvidia" }), [], { allowedRepositories: new RepositoryAllowList(allowed) }).errors.map((e) => e.reason), ["ImageNotAllowed"]);
});

test("allow-list entries are normalised and bad ones refused with the fix", () => {
  assert.deepEqual(new RepositoryAllowList(["nvcr.io/nvidia/", "index.docker.io", " nvcr.io/nvidia "]).entries, ["docker.io", "nvcr.io/nvidia"]);
  assert.ok(new RepositoryAllowList(["docker.io/library"]).allows("ubuntu:24.04"));
  for (const bad of ["", "nvidia", "nvcr.io/nvidia:550", "nvcr.io/nvidia@sha256:" + "0".repeat(64), "nvcr.io/Nvidia"]) {
    assert.throws(() => new RepositoryAllowList([bad]), /allow-list/, bad);
  }
});

test("pull secret, secretEnv and config map names must be object names", () => {
  assert.deepEqual(reasons(policy({ imagePullSecrets: ["ngc-secret", "other.one"] })), []);
  const v = validatePolicy(policy({ imagePullSecrets: ["ok", "../../kube-system/secrets/admin"], secretEnv: "A B", kernelModuleConfig: { name: "x/y" } }), nodes);
  assert.deepEqual(v.errors.map((e) => e.field), ["spec.driver.imagePullSecrets[1]", "spec.driver.secretEnv", "spec.driver.kernelModuleConfig.name"]);
  assert.match(v.errors[0]?.message ?? "", /not a Kubernetes object name/);
});

test("stripControl leaves printable text and replaces escape sequences and bidi overrides", () => {
  assert.equal(stripControl("driver 550.54.15 — ok\nnext"), "driver 550.54.15 — ok\nnext");
  assert.equal(stripControl("a\u001b[31mred\u0007\u202eb"), "a\uFFFD[31mred\uFFFD\uFFFDb");
  assert.equal(stripControl("a\nb\tc", { newlines: false }), "a b c");
  fc.assert(
    fc.property(fc.string({ unit: "binary" }), (s) => {
      // eslint-disable-next-line no-control-regex
      assert.doesNotMatch(stripControl(s, { newlines: false }), /[\u0000-\u001f\u007f-\u009f\u202a-\u202e]/);
    }),
  );
});

test("the API token is mounted into the k8s-driver-manager init container only, never into the driver container", () => {
  const manager = { image: "k8s-driver-manager", repository: "nvcr.io/nvidia/cloud-native", version: "v0.6.8" };
  for (const withManager of [true, false]) {
    const { daemonSets } = renderDriverDaemonSets({ policy: policy(withManager ? { manager } : {}), nodes, namespace: "gpu-operator" });
    const pod = daemonSets[0]!.spec.template.spec;
    assert.equal(pod.automountServiceAccountToken, false);
    const tokenVolumes = pod.volumes.filter((v) => "projected" in v && v.projected.sources.some((s) => "serviceAccountToken" in s)).map((v) => v.name);
    assert.deepEqual(tokenVolumes, withManager ? [MANAGER_TOKEN_VOLUME] : []);
    for (const c of pod.containers) {
      assert.ok(!c.volumeMounts.some((m) => m.name === MANAGER_TOKEN_VOLUME || m.mountPath.startsWith("/var/run/secrets")), c.name);
    }
    const init = pod.initContainers ?? [];
    assert.equal(init.length, withManager ? 1 : 0);
    for (const c of init) {
      assert.deepEqual(c.volumeMounts.find((m) => m.name === MANAGER_TOKEN_VOLUME), { name: MANAGER_TOKEN_VOLUME, mountPath: "/var/run/secrets/kubernetes.io/serviceaccount", readOnly: true });
    }
  }
});

test("the admin-only GPU node label: parsed, refused outside node-restriction.kubernetes.io/, required by every driver pod", () => {
  assert.deepEqual(parseRestrictedNodeLabel("node-restriction.kubernetes.io/nvidia-gpu"), { key: "node-restriction.kubernetes.io/nvidia-gpu", value: "true" });
  assert.deepEqual(parseRestrictedNodeLabel("node-restriction.kubernetes.io/gpu=a100"), { key: "node-restriction.kubernetes.io/gpu", value: "a100" });
  assert.throws(() => parseRestrictedNodeLabel("nvidia.com/gpu.present=true"), /not under node-restriction\.kubernetes\.io\/: a kubelet may set other labels/);
  assert.throws(() => parseRestrictedNodeLabel("node-restriction.kubernetes.io/a=b=c"), /more than one '='/);
  assert.throws(() => parseRestrictedNodeLabel("node-restriction.kubernetes.io/"), /not a valid label/);

  const label = parseRestrictedNodeLabel("node-restriction.kubernetes.io/gpu=a100");
  const admitted = gpuNodeObject({ name: "gpu-2", kernel: "5.15.0-69-generic", os: { id: "ubuntu", versionId: "22.04" }, arch: "amd64", labels: { [label.key]: "a100" } });
  const selfLabelled = gpuNodeObject({ name: "gpu-3", kernel: "5.15.0-69-generic", os: { id: "ubuntu", versionId: "22.04" }, arch: "amd64", labels: { [label.key]: "true" } });
  assert.deepEqual(restrictedNodes([...nodes, admitted, selfLabelled], label).map((n) => n.metadata.name), ["gpu-2"]);
  assert.equal(restrictedNodes(nodes, undefined).length, 1);

  const plain = renderDriverDaemonSets({ policy: policy({}), nodes, namespace: "gpu-operator" }).daemonSets[0]!;
  const restricted = renderDriverDaemonSets({ policy: policy({}), nodes, namespace: "gpu-operator", requiredNodeLabels: { [label.key]: label.value } }).daemonSets[0]!;
  assert.equal(restricted.spec.template.spec.nodeSelector[label.key], "a100");
  assert.equal(plain.spec.template.spec.nodeSelector[label.key], undefined);
});

test("forbiddenEnvReason: each entrypoint variable refused for the driver only, each execution variable for both, word for word", () => {
  // Written out, not taken from the module: a name dropped from its list must fail here.
  const entrypoint = ["ROOT", "SYSFS_ROOT", "PROC_ROOT", "RUN_DIR", "DRIVER_CONFIG_DIR", "MODPROBE_DIR", "IMAGE_INFO_DIR", "PERSISTENCED_PID_FILE", "FABRICMANAGER_PID_FILE", "FABRICMANAGER_CONFIG", "DRIVER_ROOT_SOURCE", "FIRMWARE_SEARCH_PATH", "DAEMON_STOP_TIMEOUT", "STARTUP_PROBE"];
  assert.deepEqual([...ENTRYPOINT_VARIABLES], entrypoint);
  for (const name of entrypoint) {
    assert.equal(forbiddenEnvReason(name, "driver"), "it is the driver entrypoint's own setting (a host path, probe or timeout), which only its tests may change", name);
    assert.equal(forbiddenEnvReason(name, "manager"), undefined, `${name} is the driver entrypoint's, not the manager's`);
  }
  for (const name of ["PATH", "BASH_ENV", "ENV", "SHELLOPTS", "BASHOPTS", "PS4", "IFS", "CDPATH", "GLOBIGNORE"]) {
    for (const c of ["driver", "manager"] as const) assert.equal(forbiddenEnvReason(name, c), "it changes which program or shell code the privileged container runs", `${name} in ${c}`);
  }
  for (const c of ["driver", "manager"] as const) {
    assert.equal(forbiddenEnvReason("LD_PRELOAD", c), "it changes which libraries the dynamic loader loads into every program of the privileged container");
    assert.equal(forbiddenEnvReason("BASH_FUNC_modprobe%%", c), "it defines a shell function that replaces a command the container's scripts run");
    for (const ok of ["NVIDIA_VISIBLE_DEVICES", "XLD_FOO", "MY_PATH", "ENVIRONMENT", "root"]) assert.equal(forbiddenEnvReason(ok, c), undefined, ok);
  }
});

test("allow-list: entries sorted and deduplicated, prefixes only at a path boundary, each refusal word for word", () => {
  const allow = new RepositoryAllowList(["registry.example.com:5000/", " nvcr.io/nvidia ", "nvcr.io/nvidia", "docker.io/library"]);
  assert.deepEqual(allow.entries, ["docker.io/library", "nvcr.io/nvidia", "registry.example.com:5000"]);
  assert.equal(allow.enabled, true);
  assert.equal(new RepositoryAllowList([]).enabled, false);
  assert.equal(new RepositoryAllowList([]).allows("anything.example.com/x:1"), true);
  assert.equal(allow.allows("nvcr.io/nvidia"), true, "the entry itself");
  assert.equal(allow.allows("nvcr.io/nvidia/driver:550"), true);
  assert.equal(allow.allows("nvcr.io/nvidia-evil/driver:550"), false, "a longer name is not under the entry");
  assert.equal(allow.allows("nvcr.io/nvidiadriver:550"), false);
  assert.equal(allow.allows("ubuntu:22.04"), true, "docker.io/library/ubuntu");
  assert.equal(allow.allows("registry.example.com:5000/a/b@sha256:" + "a".repeat(64)), true);
  assert.equal(allow.allows("registry.example.com/a"), false, "another port is another registry");
  const fix = "give registry hosts or repositories like nvcr.io/nvidia or registry.example.com:5000";
  const refused = (entry: string, message: string) => assert.throws(() => new RepositoryAllowList([entry]), (e: unknown) => e instanceof UserError && e.message === message, entry);
  refused(" / ", `the image repository allow-list has an empty entry: ${fix}`);
  refused("nvcr.io/nvidia/driver:550", `image repository allow-list entry "nvcr.io/nvidia/driver:550" names a tag or digest: ${fix}`);
  refused("nvcr.io/nvidia@sha256:x", `image repository allow-list entry "nvcr.io/nvidia@sha256:x" names a tag or digest: ${fix}`);
  refused("nvidia/driver", `image repository allow-list entry "nvidia/driver" has no registry host: write it in full, like docker.io/nvidia/driver`);
  refused("nvidia", `image repository allow-list entry "nvidia" is neither a registry host nor a repository with its registry: ${fix}`);
  assert.deepEqual(new RepositoryAllowList(["localhost/team"]).entries, ["localhost/team"]);
  assert.deepEqual(new RepositoryAllowList(["registry.example.com:5000"]).entries, ["registry.example.com:5000"], "a bare host with a port is a host, not a tag");
  assert.throws(() => new RepositoryAllowList(["nvcr.io/UPPER"]), (e: unknown) => e instanceof UserError && e.message.startsWith(`image repository allow-list entry "nvcr.io/UPPER" is not a registry or repository name: `));
});

test("stripControl: newlines kept by default and turned to spaces on request; restrictedNodes filters by the exact value", () => {
  assert.equal(stripControl("a\nb\tc\rd"), "a\nb\tc\uFFFDd", "a carriage return is a control character; newline and tab are not");
  assert.equal(stripControl("a\nb\tc", { newlines: false }), "a b c");
  assert.equal(stripControl("a\u001b[31mred\u200b", { newlines: true }), "a\uFFFD[31mred\uFFFD");
  const nodes = [{ metadata: { name: "a", labels: { "node-restriction.kubernetes.io/gpu": "true" } } }, { metadata: { name: "b", labels: { "node-restriction.kubernetes.io/gpu": "yes" } } }, { metadata: { name: "c" } }];
  assert.deepEqual(restrictedNodes(nodes, { key: "node-restriction.kubernetes.io/gpu", value: "true" }).map((n) => n.metadata.name), ["a"]);
  assert.deepEqual(restrictedNodes(nodes, undefined).map((n) => n.metadata.name), ["a", "b", "c"]);
  assert.deepEqual(parseRestrictedNodeLabel("  node-restriction.kubernetes.io/gpu  "), { key: "node-restriction.kubernetes.io/gpu", value: "true" });
  assert.deepEqual(parseRestrictedNodeLabel("node-restriction.kubernetes.io/gpu="), { key: "node-restriction.kubernetes.io/gpu", value: "" });
  const fix = "give a label like node-restriction.kubernetes.io/nvidia-gpu=true, set by the cluster admin on GPU nodes";
  assert.throws(() => parseRestrictedNodeLabel("node-restriction.kubernetes.io/a=b=c"), (e: unknown) => e instanceof UserError && e.message === `GPU node label "node-restriction.kubernetes.io/a=b=c" has more than one '=': ${fix}`);
  assert.throws(() => parseRestrictedNodeLabel("node-restriction.kubernetes.io/-bad"), (e: unknown) => e instanceof UserError && e.message === `GPU node label "node-restriction.kubernetes.io/-bad" is not a valid label: ${fix}`);
  assert.throws(() => parseRestrictedNodeLabel("node-restriction.kubernetes.io/ok=-bad"), (e: unknown) => e instanceof UserError && e.message === `GPU node label "node-restriction.kubernetes.io/ok=-bad" is not a valid label: ${fix}`);
});
