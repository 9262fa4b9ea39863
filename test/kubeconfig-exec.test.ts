// A kubeconfig whose user is an exec credential plugin, as EKS, GKE and AKS write them. The
// plugin is a script that asks the real API server for a ServiceAccount token (TokenRequest,
// bound to a Secret so deleting the Secret revokes it) and prints it as an ExecCredential.
import { execFile } from "node:child_process";
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { chmodSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parse as parseYaml } from "yaml";
import { attachCluster, kwokWorkdir, type LocalCluster } from "./harness/cluster.ts";
import { repoRoot, toolPath } from "./harness/tools.ts";
import { eventually } from "./harness/wait.ts";
import { KubeClient } from "../src/kube/client.ts";

/** The built CLI, as a user runs it. */
function gpuop(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(join(repoRoot, "bin", "gpuop"), args, { env: { ...process.env, KUBECONFIG: "" } }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof (err as { code?: unknown }).code === "number" ? (err as { code: number }).code : 1) : 0, stdout, stderr });
    });
  });
}

const ns = "exec-plugin-test";
const sa = "exec-plugin";
const state = join(kwokWorkdir, "exec-plugin-test");
let cluster: LocalCluster;
let admin: KubeClient;
let kubeconfig: string;

const runs = () => (existsSync(join(state, "count")) ? Number(readFileSync(join(state, "count"), "utf8").trim()) : 0);

before(async () => {
  const name = process.env.GPUOP_TEST_CLUSTER;
  assert.ok(name, "run through `make test` (test/run.ts), which starts the cluster");
  cluster = attachCluster(name);
  admin = cluster.client();
  rmSync(state, { recursive: true, force: true });
  mkdirSync(state, { recursive: true });
  await admin.create("/api/v1/namespaces", { metadata: { name: ns } });
  await admin.create(`/api/v1/namespaces/${ns}/serviceaccounts`, { metadata: { name: sa } });
  await admin.create("/apis/rbac.authorization.k8s.io/v1/clusterroles", { metadata: { name: "exec-plugin-test" }, rules: [
    { apiGroups: [""], resources: ["nodes", "pods"], verbs: ["get", "list"] },
    { apiGroups: ["apps"], resources: ["daemonsets"], verbs: ["list"] },
    { apiGroups: ["nvidia.com"], resources: ["clusterpolicies"], verbs: ["list"] },
  ] });
  await admin.create("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", {
    metadata: { name: "exec-plugin-test" },
    roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: "exec-plugin-test" },
    subjects: [{ kind: "ServiceAccount", name: sa, namespace: ns }],
  });

  const plugin = join(state, "plugin.sh");
  const kubectl = `${toolPath("kubectl")} --kubeconfig ${cluster.kubeconfig} --cache-dir ${join(state, "cache")} -n ${ns}`;
  writeFileSync(
    plugin,
    `#!/bin/bash
set -euo pipefail
n=$(( $(cat "$STATE/count" 2>/dev/null || echo 0) + 1 ))
printf '%s' "$KUBERNETES_EXEC_INFO" > "$STATE/info-$n.json"
${kubectl} create secret generic exec-bound >/dev/null 2>&1 || true
token=$(${kubectl} create token ${sa} --duration=10m --bound-object-kind=Secret --bound-object-name=exec-bound)
expires=$(date -u -d "+$(cat "$STATE/expiry-seconds") seconds" +%Y-%m-%dT%H:%M:%SZ)
echo "$expires" > "$STATE/expires-$n"
echo "$token" > "$STATE/token-$n"
echo "$n" > "$STATE/count"
printf '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"%s","expirationTimestamp":"%s"}}' "$token" "$expires"
`,
  );
  chmodSync(plugin, 0o755);
  writeFileSync(join(state, "expiry-seconds"), "600");

  const adminConfig = parseYaml(readFileSync(cluster.kubeconfig, "utf8")) as { clusters: { cluster: Record<string, string> }[] };
  const c = adminConfig.clusters[0]!.cluster;
  kubeconfig = join(state, "kubeconfig.yaml");
  writeFileSync(
    kubeconfig,
    JSON.stringify({
      apiVersion: "v1",
      kind: "Config",
      "current-context": "exec",
      clusters: [{ name: "test", cluster: { server: c["server"], ...(c["certificate-authority"] ? { "certificate-authority": c["certificate-authority"] } : {}), ...(c["certificate-authority-data"] ? { "certificate-authority-data": c["certificate-authority-data"] } : {}), ...(c["insecure-skip-tls-verify"] ? { "insecure-skip-tls-verify": true } : {}) } }],
      contexts: [{ name: "exec", context: { cluster: "test", user: "plugin" } }],
      users: [{ name: "plugin", user: { exec: { apiVersion: "client.authentication.k8s.io/v1", command: "./plugin.sh", env: [{ name: "STATE", value: state }], interactiveMode: "Never", provideClusterInfo: true } } }],
    }),
  );
});

after(async () => {
  await admin.delete(`/api/v1/namespaces/${ns}`).catch(() => undefined);
  await admin.delete("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/exec-plugin-test").catch(() => undefined);
  await admin.delete("/apis/rbac.authorization.k8s.io/v1/clusterroles/exec-plugin-test").catch(() => undefined);
  await admin.close();
});

interface Review {
  status: { userInfo: { username: string } };
}

test("an exec-plugin kubeconfig authenticates as the plugin's ServiceAccount; the token is reused, re-fetched after a 401 and after its expiry", async () => {
  const client = KubeClient.load({ kubeconfig });
  try {
    const who = async () => (await client.create<Review>("/apis/authentication.k8s.io/v1/selfsubjectreviews", { apiVersion: "authentication.k8s.io/v1", kind: "SelfSubjectReview" })).status.userInfo.username;
    assert.equal(await who(), `system:serviceaccount:${ns}:${sa}`);
    await client.list("/api/v1/nodes");
    assert.equal(runs(), 1, "a token valid for 10 minutes is reused");

    const info = JSON.parse(readFileSync(join(state, "info-1.json"), "utf8")) as { apiVersion: string; spec: { interactive: boolean; cluster?: { server: string } } };
    assert.equal(info.apiVersion, "client.authentication.k8s.io/v1");
    assert.equal(info.spec.interactive, false);
    assert.equal(info.spec.cluster?.server, client.access.server, "provideClusterInfo passes the cluster");

    // Revoke the token: its bound Secret goes. The next request gets a 401, and the plugin runs again.
    writeFileSync(join(state, "expiry-seconds"), "3");
    await admin.delete(`/api/v1/namespaces/${ns}/secrets/exec-bound`);
    const old = new KubeClient({ ...client.access, credentials: undefined, token: readFileSync(join(state, "token-1"), "utf8").trim() });
    await eventually("the revoked token to be refused", async () => {
      const status = await old.list("/api/v1/nodes").then(() => 200, (err: { status?: number }) => err.status);
      return status === 401 ? true : undefined;
    });
    await old.close();
    assert.equal(await who(), `system:serviceaccount:${ns}:${sa}`);
    assert.equal(runs(), 2, "a 401 makes the plugin run once more");

    // The second credential expires after 3 seconds: once that time has passed, the plugin runs again.
    const expires = Date.parse(readFileSync(join(state, "expires-2"), "utf8").trim());
    await eventually("the credential's expirationTimestamp to pass", async () => (Date.now() > expires ? true : undefined), { timeoutMs: 30_000 });
    await client.list("/api/v1/nodes");
    assert.equal(runs(), 3, "an expired credential is fetched again before the request");
  } finally {
    await client.close();
  }
});

test("the CLI works with the exec-plugin kubeconfig; a broken kubeconfig or credentials over http end in one clear line", async () => {
  const status = await gpuop(["status", "--kubeconfig", kubeconfig, "-o", "json"]);
  assert.equal(status.code, 0, status.stderr);
  assert.ok("nodes" in (JSON.parse(status.stdout) as object));

  const broken = join(state, "broken.yaml");
  writeFileSync(broken, "clusters:\n- name: c\n  cluster: {}\n");
  const r = await gpuop(["status", "--kubeconfig", broken]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /kubeconfig .*broken\.yaml: clusters\[0\] \("c"\) has no server URL/);
  assert.doesNotMatch(r.stderr, /TypeError|\n\s+at /);

  const http = join(state, "http.yaml");
  writeFileSync(http, JSON.stringify({ "current-context": "c", clusters: [{ name: "k", cluster: { server: "http://127.0.0.1:1" } }], contexts: [{ name: "c", context: { cluster: "k", user: "u" } }], users: [{ name: "u", user: { token: "secret-token" } }] }));
  const h = await gpuop(["status", "--kubeconfig", http]);
  assert.equal(h.code, 2);
  assert.match(h.stderr, /plain http/);
  assert.doesNotMatch(h.stderr, /secret-token/);
});
