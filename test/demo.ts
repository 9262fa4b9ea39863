// `make demo`: gpuop's main job on a local simulated cluster. Starts the
// cluster with a few GPU nodes on different kernels and Ubuntu releases,
// installs a conventional ClusterPolicy, runs the operator, switches to
// precompiled drivers with the documented kubectl patch, and shows
// `gpuop status` before and after. Everything it starts stops at the end or on Ctrl-C.
import { execFile } from "node:child_process";
import { join } from "node:path";
import { promisify } from "node:util";
import { startCluster, stopCluster } from "./harness/cluster.ts";
import { createGpuNode } from "./harness/nodes.ts";
import { startOperator, type OperatorProcess } from "./harness/operator.ts";
import { ensureNamespace, examplePolicy, installCrd, waitForDriverPods, waitForState } from "./harness/policy.ts";
import { repoRoot } from "./harness/tools.ts";

const run = promisify(execFile);
const name = "gpuop-demo";
let operator: OperatorProcess | undefined;
let cleaning: Promise<void> | undefined;
const cleanup = () =>
  (cleaning ??= (async () => {
    await operator?.stop();
    await stopCluster(name);
    console.log(`\nStopped the operator and the ${name} cluster.`);
  })());
for (const sig of ["SIGINT", "SIGTERM"] as const) process.on(sig, () => void cleanup().then(() => process.exit(130)));

const step = (s: string) => console.log(`\n\x1b[1m==> ${s}\x1b[0m`);
const kubectlCmd = (args: string[]) => console.log(`$ kubectl ${args.join(" ")}`);

async function gpuop(kubeconfig: string, args: string[]) {
  console.log(`$ gpuop ${args.join(" ")}`);
  const { stdout } = await run(join(repoRoot, "bin", "gpuop"), args, { env: { ...process.env, KUBECONFIG: kubeconfig } });
  process.stdout.write(stdout);
}

try {
  step("Starting a local cluster (etcd, kube-apiserver, controller-manager, scheduler, kwok) on 127.0.0.1");
  const cluster = await startCluster(name);
  const client = cluster.client();
  console.log(`KUBECONFIG=${cluster.kubeconfig}`);

  step("Adding simulated GPU nodes (NFD labels, different kernels and Ubuntu releases)");
  const nodes = [
    { name: "gpu-node-1", kernel: "5.15.0-69-generic", os: { id: "ubuntu", versionId: "22.04" } },
    { name: "gpu-node-2", kernel: "5.15.0-69-generic", os: { id: "ubuntu", versionId: "22.04" } },
    { name: "gpu-node-3", kernel: "5.15.0-1103-aws", os: { id: "ubuntu", versionId: "22.04" } },
    { name: "gpu-node-4", kernel: "6.8.0-1046-azure-fde", os: { id: "ubuntu", versionId: "24.04" } },
    { name: "gpu-node-5", kernel: "6.8.0-1047-oracle", os: { id: "ubuntu", versionId: "24.04" } },
  ];
  for (const n of nodes) {
    await createGpuNode(client, n);
    console.log(`  ${n.name}: ${n.kernel}, ${n.os.id} ${n.os.versionId}`);
  }

  step("Installing the ClusterPolicy CRD and a conventional ClusterPolicy (driver 550.54.15)");
  await installCrd(cluster);
  await ensureNamespace(client, "gpu-operator");
  await cluster.kubectl(["apply", "-f", "-"], { input: examplePolicy });

  step("Running the operator (gpuop operator)");
  operator = await startOperator({ kubeconfig: cluster.kubeconfig });
  await waitForDriverPods(client, nodes.length);
  await waitForState(client, "ready");
  await gpuop(cluster.kubeconfig, ["status"]);

  step("Enabling precompiled drivers, branch 580, with the documented patch");
  const patch = ["patch", "clusterpolicy/cluster-policy", "--type=json", '-p=[{"op":"replace", "path":"/spec/driver/usePrecompiled", "value":true}, {"op":"replace", "path":"/spec/driver/version", "value":"580"}]'];
  kubectlCmd(patch);
  process.stdout.write((await cluster.kubectl(patch)).stdout);
  console.log("Waiting while the operator moves nodes to per-kernel DaemonSets, 25% of them at a time ...");
  await waitForDriverPods(client, nodes.length, (p) => /\d+\.\d+\.\d+-\d+/.test(p.metadata.name ?? ""));
  await waitForState(client, "ready");
  await gpuop(cluster.kubeconfig, ["status"]);
  const getPods = ["get", "pods", "-l", "app=nvidia-driver-daemonset", "-n", "gpu-operator"];
  kubectlCmd(getPods);
  process.stdout.write((await cluster.kubectl(getPods)).stdout);
  await client.close();
  console.log("\nThe pod names now carry each node's kernel version.");
} catch (err) {
  console.error(`demo failed: ${(err as Error).message}`);
  if (operator) console.error(`operator log (last lines):\n${operator.logs().split("\n").slice(-20).join("\n")}`);
  process.exitCode = 1;
} finally {
  await cleanup();
}
