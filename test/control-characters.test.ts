// Text from a ClusterPolicy or a registry can carry terminal escape sequences (ESC [2J clears the
// screen, OSC sequences set titles or links). gpuop strips control characters before such text
// reaches an Event (which `kubectl describe` prints raw) or its own terminal output.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { attachCluster, type LocalCluster } from "./harness/cluster.ts";
import { deletePolicies, installCrd, POLICY_PATH } from "./harness/policy.ts";
import { repoRoot } from "./harness/tools.ts";
import { EventRecorder } from "../src/kube/events.ts";
import { silentLogger } from "../src/kube/log.ts";
import type { KubeClient } from "../src/kube/client.ts";

// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/;
const HOSTILE = "550\u001b[2J\u001b]0;owned\u0007.54.15";

let cluster: LocalCluster;
let client: KubeClient;

before(async () => {
  cluster = attachCluster(process.env.GPUOP_TEST_CLUSTER ?? "");
  client = cluster.client();
  await installCrd(cluster);
  await deletePolicies(client);
});

after(async () => {
  await deletePolicies(client).catch(() => undefined);
  await client.close();
});

test("an Event's reason and message carry no control characters", async () => {
  const name = `ctl-${Date.now()}`;
  const recorder = new EventRecorder(client, "gpuop-test", silentLogger);
  await recorder.record({ apiVersion: "v1", kind: "ConfigMap", metadata: { name, namespace: "default" } }, "Warning", "Bad\u001bReason", `version "${HOSTILE}" is not a version\nsecond line`);
  const events = await client.list<{ reason: string; message: string; involvedObject: { name: string } }>("/api/v1/namespaces/default/events");
  const ours = events.items.filter((e) => e.involvedObject.name === name);
  assert.equal(ours.length, 1);
  assert.doesNotMatch(ours[0]!.message, CONTROL);
  assert.doesNotMatch(ours[0]!.reason, CONTROL);
  assert.match(ours[0]!.message, /version "550\uFFFD\[2J\uFFFD\]0;owned\uFFFD\.54\.15" is not a version\nsecond line/);
});

test("gpuop status prints a policy's values without their escape sequences", async () => {
  assert.ok(existsSync(join(repoRoot, "dist/cli/main.js")), "build first (make build): this test runs bin/gpuop");
  await client.create(POLICY_PATH, { apiVersion: "nvidia.com/v1", kind: "ClusterPolicy", metadata: { name: "cluster-policy" }, spec: { driver: { version: HOSTILE } } });
  const out = await new Promise<{ code: number; stdout: string }>((resolve, reject) => {
    const child = spawn(join(repoRoot, "bin/gpuop"), ["status", "--kubeconfig", cluster.kubeconfig], { env: { ...process.env, HOME: mkdtempSync(join(tmpdir(), "gpuop-home-")) } });
    let stdout = "";
    child.stdout.on("data", (d: Buffer) => { stdout += d.toString(); });
    child.on("error", reject);
    child.on("exit", (code) => resolve({ code: code ?? 1, stdout }));
  });
  assert.equal(out.code, 0);
  assert.match(out.stdout, /version: 550\uFFFD\[2J\uFFFD\]0;owned\uFFFD\.54\.15/);
  assert.doesNotMatch(out.stdout, CONTROL);
});
