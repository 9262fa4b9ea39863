import { withKernelFallback } from "../core/catalog.ts";
import { UserError } from "../core/errors.ts";
import {
  decideNodeDriver,
  fallbackEnabled,
  parseKernelFlags,
  preflightExitCode,
  preflightRow,
  resolveConventional,
  type ConventionalAnswer,
  type PreflightRow,
} from "../core/fallback.ts";
import { classifyNodes, NFD_NVIDIA_PCI_LABEL } from "../core/gpu-node.ts";
import { parseImageRef } from "../core/image.ts";
import { precompiledDaemonSetName } from "../core/names.ts";
import { CLUSTER_POLICY_PATH, normalizePolicy, selectActivePolicy, type ClusterPolicy } from "../core/policy.ts";
import { driverImage } from "../core/render.ts";
import { normalizeArch } from "../core/support.ts";
import type { Node } from "../kube/types.ts";
import type { RegistryClient } from "../registry/client.ts";
import { RegistryError } from "../registry/errors.ts";
import { formatData, formatTable, outputFormat, parseFlags, type Command } from "./command.ts";
import { couldNotCheck, Kube, registryClient, registryFlags, registryFlagsHelp } from "./precompiled.ts";

const usage = `Usage:
  gpuop preflight --kernel <release> [--kernel <os-tag>=<release> ...] [--selector <labels>] [flags]

Before a new kernel is rolled out: for every GPU node (or those matching --selector), with
its own OS and architecture, what driver it would get from the active ClusterPolicy after
booting that kernel:
  precompiled   the registry holds <branch>-<kernel>-<os-tag> for the node's architecture
  fallback      it does not, and the conventional driver of the branch for the node's OS
                (the newest <branch>.x.y-<os-tag> in the registry) would run instead; it
                compiles the modules on the node and needs the OS package repositories
  none          neither: the node would have no driver
The repository, branch and pull secrets come from the active ClusterPolicy.

Exit status: 0 every node keeps a driver, 1 some node would have none, 2 the answer is
incomplete or could not be found (a registry or cluster that cannot be asked, no policy,
a node without NFD labels).

Flags:
  --kernel <release>            kernel release (uname -r) for every OS; or <os-tag>=<release>
                                for one OS, once per OS (nodes of an OS without one keep
                                the kernel they run)
  -l, --selector <labels>       only GPU nodes matching this label selector
  -n, --namespace <ns>          where the policy's pull secrets live (default: the policy's
                                status.namespace, else gpu-operator)
  --no-conventional-fallback    answer as an operator started with the fallback off would

${registryFlagsHelp}`;

export const preflightCommand: Command = {
  name: "preflight",
  summary: "Before a kernel upgrade: which GPU nodes would keep a driver (precompiled, fallback, none)",
  usage,
  async run(argv) {
    const { values, positionals } = parseFlags(argv, {
      ...registryFlags,
      kernel: { type: "string", multiple: true },
      selector: { type: "string", short: "l" },
      namespace: { type: "string", short: "n" },
      "no-conventional-fallback": { type: "boolean" },
    }, usage);
    const format = outputFormat(values.output);
    if (positionals.length > 0) throw new UserError(`preflight takes no arguments (got "${positionals.join(" ")}"); give kernels with --kernel`);
    const kernels = parseKernelFlags(values.kernel ?? []);
    const kube = new Kube(values.kubeconfig);
    let client: RegistryClient | undefined;
    try {
      return await couldNotCheck(async () => {
        const policies = await kube.get().list<ClusterPolicy & { metadata: { name: string } }>(CLUSTER_POLICY_PATH).catch((err: unknown) => {
          if ((err as { status?: number }).status === 404) return { items: [] };
          throw err;
        });
        const active = selectActivePolicy(policies.items);
        if (!active) throw new UserError("no ClusterPolicy in the cluster: preflight answers for the active policy's driver (create one, e.g. with the Helm chart)", 2);
        const policy = normalizePolicy(active);
        const driver = policy.spec.driver;
        if (!driver.usePrecompiled) throw new UserError(`ClusterPolicy ${active.metadata.name} uses the conventional driver, which is compiled on each node for whatever kernel it boots: a kernel change needs no precompiled image (preflight is for usePrecompiled: true)`, 2);
        const branch = driver.version ?? "";
        const enabled = values["no-conventional-fallback"] ? { enabled: false } : fallbackEnabled(true, active.metadata.annotations);

        const selector = [`${NFD_NVIDIA_PCI_LABEL}=true`, ...(values.selector ? [values.selector] : [])].join(",");
        const nodes = await kube.get().list<Node>("/api/v1/nodes", { labelSelector: selector });
        const { gpuNodes, problems } = classifyNodes(nodes.items.map((n) => withKernelFallback(n).node));
        const targets = gpuNodes.map((n) => {
          const kernel = kernels.get(n.osTag) ?? kernels.get("*");
          return { node: n.name, osTag: n.osTag, arch: n.arch ? normalizeArch(n.arch) : "amd64", kernel: kernel ?? n.kernel, unchanged: kernel === undefined };
        });

        const repo = (driver.repository ?? "").replace(/\/+$/, "");
        const { registry, repository: name } = parseImageRef(repo === "" ? driver.image : `${repo}/${driver.image}`);
        const namespace = values.namespace ?? active.status?.namespace ?? "gpu-operator";
        client = await policyRegistryClient(registry, values, kube, namespace, driver.imagePullSecrets ?? []);
        const c = client;
        const has = memo((key: string) => {
          const [tag, arch] = key.split(" ") as [string, string];
          return c.hasTag(name, tag, arch).catch((err: unknown) => {
            // A repository that does not exist holds no image: that is an answer, not an error.
            if (err instanceof RegistryError && err.code === "not-found") return false;
            throw err;
          });
        });
        const tags = memo(() => c.listTags(name).catch((err: unknown) => {
          if (err instanceof RegistryError && err.code === "not-found") return [] as string[];
          throw err;
        }));
        const rows: PreflightRow[] = [];
        for (const t of targets) {
          const image = driverImage(driver, t.osTag, t.kernel);
          const missing = !(await has(`${parseImageRef(image).tag} ${t.arch}`));
          let conventional: ConventionalAnswer | undefined;
          if (missing && enabled.enabled) {
            conventional = resolveConventional(driver, t.osTag, await tags(""));
            if (conventional.found && !(await has(`${parseImageRef(conventional.image).tag} ${t.arch}`))) {
              conventional = { found: false, reason: `the conventional image ${conventional.image} has no ${t.arch} image` };
            }
          }
          const plan = decideNodeDriver({ node: t.node, osTag: t.osTag, pool: precompiledDaemonSetName(t.kernel, t.osTag), image, missing }, conventional, enabled.enabled);
          rows.push(preflightRow(t, plan));
        }
        const code = preflightExitCode(rows, problems.length);
        const out = { policy: active.metadata.name, branch, repository: `${registry}/${name}`, conventionalFallback: enabled.enabled, nodes: rows, problems: problems.map((p) => ({ node: p.name, problem: p.problem })) };
        if (format !== "table") {
          process.stdout.write(formatData(out, format));
          return code;
        }
        if (rows.length > 0) {
          process.stdout.write(formatTable(["NODE", "OS", "ARCH", "KERNEL", "RESULT", "IMAGE", "REASON"], rows.map((r) => [
            r.node, r.osTag, r.arch, r.unchanged ? `${r.kernel} (running)` : r.kernel, r.result, r.image || "-", r.reason || "-",
          ])));
        } else if (problems.length === 0) {
          process.stdout.write(`no GPU nodes match ${selector}\n`);
        }
        for (const p of problems) process.stdout.write(`problem: ${p.problem}\n`);
        const count = (r: PreflightRow["result"]) => rows.filter((x) => x.result === r).length;
        process.stdout.write(`${count("precompiled")} precompiled, ${count("fallback")} conventional fallback, ${count("none")} without a driver (branch ${branch}, ${registry}/${name}${enabled.enabled ? "" : ", fallback off"})\n`);
        return code;
      });
    } finally {
      await client?.close();
      await kube.close();
    }
  },
};

/**
 * A registry client with the first of the policy's pull secrets that has credentials for
 * the registry, unless --pull-secret or --docker-config choose them; without one, anonymous.
 */
async function policyRegistryClient(registry: string, values: Parameters<typeof registryClient>[1], kube: Kube, namespace: string, pullSecrets: readonly string[]): Promise<RegistryClient> {
  const ref = parseImageRef(`${registry}/x`);
  if (values["pull-secret"] !== undefined || values["docker-config"] !== undefined || pullSecrets.length === 0) return registryClient(ref, values, kube);
  const tried: string[] = [];
  for (const secret of pullSecrets) {
    try {
      return await registryClient(ref, { ...values, "pull-secret": `${namespace}/${secret}` }, kube);
    } catch (err) {
      if (!(err instanceof UserError) || err instanceof RegistryError) throw err;
      tried.push(err.message);
    }
  }
  // As the operator does: without usable credentials, ask anonymously (public images need none).
  process.stderr.write(`warning: none of the policy's pull secrets can be used for ${registry}, asking without credentials: ${tried.join("; ")}\n`);
  return registryClient(ref, values, kube);
}

function memo<T>(f: (key: string) => Promise<T>): (key: string) => Promise<T> {
  const cache = new Map<string, Promise<T>>();
  return (key) => {
    let v = cache.get(key);
    if (!v) {
      v = f(key);
      cache.set(key, v);
    }
    return v;
  };
}
