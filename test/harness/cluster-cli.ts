// `make cluster-up` / `make cluster-down`: the test cluster, for people.
import { kubeconfigPath, startCluster, stopCluster } from "./cluster.ts";

const name = process.env.GPUOP_CLUSTER ?? "gpuop-dev";
const [action] = process.argv.slice(2);

try {
  if (action === "up") {
    console.error(`starting cluster ${name} (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok) on 127.0.0.1 ...`);
    const cluster = await startCluster(name);
    console.error(`cluster ${name} is up; stop it with 'make cluster-down'`);
    console.log(`export KUBECONFIG=${cluster.kubeconfig}`);
  } else if (action === "down") {
    await stopCluster(name);
    console.error(`cluster ${name} stopped; ${kubeconfigPath(name)} removed`);
  } else {
    console.error("usage: node test/harness/cluster-cli.ts up|down");
    process.exitCode = 2;
  }
} catch (err) {
  console.error((err as Error).message);
  process.exitCode = 1;
}
