import { stripControl } from "../core/security.ts";
import { readFileSync } from "node:fs";
import { checkCatalogFilter, checkExitCode, planCheck, summarizeCatalog, withKernelFallback, type CheckRow, type CheckTarget } from "../core/catalog.ts";
import { UserError } from "../core/errors.ts";
import { ARCH_LABEL, classifyNodes, NFD_NVIDIA_PCI_LABEL, type GpuNodeProblem } from "../core/gpu-node.ts";
import { parseImageRef, type ImageRef } from "../core/image.ts";
import { parseKernel } from "../core/kernel.ts";
import { parseOsTag } from "../core/os.ts";
import { isNvidiaRepository, normalizeArch, NVIDIA_DRIVER_IMAGE, NVIDIA_DRIVER_REPOSITORY } from "../core/support.ts";
import { checkDriverBranch, formatPrecompiledTag } from "../core/tag.ts";
import { KubeClient } from "../kube/client.ts";
import type { Node, Secret } from "../kube/types.ts";
import { RegistryClient } from "../registry/client.ts";
import { RegistryError } from "../registry/errors.ts";
import { CredentialStore, dockerConfigCredentials, type Credentials } from "../registry/credentials.ts";
import { formatPlatform, type Platform } from "../registry/manifest.ts";
import { mapLimit } from "../registry/pool.ts";
import { formatData, formatTable, outputFormat, parseFlags, type Command, type OutputFormat } from "./command.ts";
import { precompiledBuild } from "./precompiled-build.ts";

export const registryFlagsHelp = `Registry flags:
  --docker-config <file>     docker config.json with credentials (default: $DOCKER_CONFIG/config.json
                             or ~/.docker/config.json, when present)
  --pull-secret <ns/name>    read credentials from a kubernetes.io/dockerconfigjson Secret
                             (what driver.imagePullSecrets names) through --kubeconfig
  --plain-http               speak http, not https (local registries)
  --insecure                 do not verify the registry's TLS certificate
  --ca-file <file>           trust this CA (PEM) for the registry's certificate
  --timeout <seconds>        per-request timeout (default 30)
  -v, --verbose              log each registry request to stderr (never credentials)
  -o, --output <fmt>         table (default), json or yaml`;

const usage = `Usage:
  gpuop precompiled list <registry>/<repository> [--branch B] [--os OS] [--kernel K] [--arch A] [flags]
  gpuop precompiled check --branch B [--repository nvcr.io/nvidia] [--image driver] [flags]
  gpuop precompiled check --branch B --kernel K --os OS [--arch A] [flags]

list   Summarises an image repository (name, latest tag, number of tags) and lists its
       precompiled driver tags <branch>-<kernel>-<os-tag>: highest branch first, then OS,
       then newest kernel first. --kernel matches a release or its start (5.15.0-69, 5.15.0).
       --arch reads the manifests of the matching tags and keeps those with that platform.
       Example: gpuop precompiled list nvcr.io/nvidia/driver --branch 535 --os ubuntu22.04

check  For each GPU node of the cluster in the kubeconfig (label ${NFD_NVIDIA_PCI_LABEL}=true),
       or for --kernel/--os/--arch given by hand: the tag it needs, whether NVIDIA publishes
       that combination, and whether the tag exists in the registry for the node's
       architecture. Exits 0 when every node has an image, 1 when any node lacks one, 2 when
       the answer is incomplete (a registry or cluster that cannot be asked, a node without
       NFD labels): gate a kernel upgrade on it.
  --branch <B>               driver branch, e.g. 535 (required)
  --repository <prefix>      registry path holding the image (default ${NVIDIA_DRIVER_REPOSITORY})
  --image <name>             image name (default ${NVIDIA_DRIVER_IMAGE})
  --kubeconfig <file>        kubeconfig (default: $KUBECONFIG, ~/.kube/config)
  --kernel <release>, --os <os-tag>, --arch <arch>
                             check one kernel by hand, without a cluster (arch default amd64)

${registryFlagsHelp}`;

export const registryFlags = {
  "docker-config": { type: "string" },
  "pull-secret": { type: "string" },
  "plain-http": { type: "boolean" },
  insecure: { type: "boolean" },
  "ca-file": { type: "string" },
  timeout: { type: "string" },
  verbose: { type: "boolean", short: "v" },
  output: { type: "string", short: "o" },
  kubeconfig: { type: "string" },
} as const;

export interface RegistryFlagValues {
  "docker-config"?: string | undefined;
  "pull-secret"?: string | undefined;
  "plain-http"?: boolean | undefined;
  insecure?: boolean | undefined;
  "ca-file"?: string | undefined;
  timeout?: string | undefined;
  verbose?: boolean | undefined;
  kubeconfig?: string | undefined;
}

/** Lazily loaded: `list` and `check --kernel` need no cluster unless --pull-secret is given. */
export class Kube {
  private client: KubeClient | undefined;
  private readonly kubeconfig: string | undefined;
  constructor(kubeconfig: string | undefined) {
    this.kubeconfig = kubeconfig;
  }
  get(): KubeClient {
    this.client ??= KubeClient.load(this.kubeconfig ? { kubeconfig: this.kubeconfig } : {});
    return this.client;
  }
  async close() {
    await this.client?.close();
  }
}

async function credentialsFor(registry: string, v: RegistryFlagValues, kube: Kube): Promise<Credentials | undefined> {
  const secret = v["pull-secret"];
  if (secret !== undefined) {
    const m = /^([a-z0-9]([-a-z0-9]*[a-z0-9])?)\/([a-z0-9]([-.a-z0-9]*[a-z0-9])?)$/.exec(secret);
    if (!m) throw new UserError(`--pull-secret "${secret}" is not <namespace>/<name>, like gpu-operator/ngc-secret`);
    const [ns, name] = [m[1]!, m[3]!];
    let obj: Secret;
    try {
      obj = await kube.get().get<Secret>(`/api/v1/namespaces/${ns}/secrets/${name}`);
    } catch (err) {
      if ((err as { status?: number }).status === 404) throw new UserError(`pull secret ${ns}/${name} does not exist: create it with 'kubectl create secret docker-registry' or fix --pull-secret`);
      throw err;
    }
    const data = obj.data?.[".dockerconfigjson"];
    if (obj.type !== "kubernetes.io/dockerconfigjson" || !data) {
      throw new UserError(`secret ${ns}/${name} is of type ${obj.type ?? "Opaque"} without .dockerconfigjson: image pull secrets must be kubernetes.io/dockerconfigjson ('kubectl create secret docker-registry')`);
    }
    const creds = CredentialStore.fromPullSecret(Buffer.from(data, "base64").toString("utf8"), ns, name).for(registry);
    if (!creds) throw new UserError(`pull secret ${ns}/${name} has no credentials for ${registry}: add an "auths" entry for it`);
    return creds;
  }
  return dockerConfigCredentials(registry, v["docker-config"]);
}

export async function registryClient(ref: ImageRef, v: RegistryFlagValues, kube: Kube): Promise<RegistryClient> {
  let ca: Buffer | undefined;
  if (v["ca-file"] !== undefined) {
    try {
      ca = readFileSync(v["ca-file"]);
    } catch (err) {
      throw new UserError(`cannot read --ca-file ${v["ca-file"]}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
  }
  let timeoutMs: number | undefined;
  if (v.timeout !== undefined) {
    const s = Number(v.timeout);
    if (!Number.isFinite(s) || s <= 0) throw new UserError(`--timeout "${v.timeout}" is not a positive number of seconds`);
    timeoutMs = s * 1000;
  }
  const credentials = await credentialsFor(ref.registry, v, kube);
  return new RegistryClient({
    registry: ref.registry,
    ...(credentials ? { credentials } : {}),
    plainHttp: v["plain-http"] ?? false,
    insecure: v.insecure ?? false,
    ...(ca ? { ca } : {}),
    ...(timeoutMs ? { timeoutMs } : {}),
    ...(v.verbose ? { log: (line: string) => process.stderr.write(`registry: ${stripControl(line, { newlines: false })}\n`) } : {}),
  });
}

/**
 * Exit status 2 for every failure that leaves the question unanswered (a registry that
 * refuses, cannot be reached or speaks another protocol; a cluster that cannot be read),
 * so a pipeline can tell "could not check" from 1, "an image is missing". A repository
 * that does not exist stays 1: the registry answered, and nothing is there.
 */
export async function couldNotCheck<T>(f: () => Promise<T>): Promise<T> {
  try {
    return await f();
  } catch (err) {
    if (err instanceof RegistryError) {
      if (err.code === "not-found") throw err;
      throw new UserError(`could not check: ${err.message}`, 2);
    }
    if (err instanceof UserError) throw err;
    throw new UserError(`could not check: ${(err as Error).message ?? String(err)}`, 2);
  }
}

/** Tags and messages come from a registry: no escape sequences reach the terminal. */
function write(text: string) {
  process.stdout.write(stripControl(text));
}

// ---- list ----

async function runList(argv: string[]): Promise<number> {
  const { values, positionals } = parseFlags(argv, {
    ...registryFlags,
    branch: { type: "string" }, os: { type: "string" }, kernel: { type: "string" }, arch: { type: "string" },
  }, usage);
  const format = outputFormat(values.output);
  if (positionals.length !== 1) throw new UserError(`precompiled list takes one <registry>/<repository>, like nvcr.io/nvidia/driver\n\n${usage}`);
  const ref = parseImageRef(positionals[0]!);
  if (ref.tag !== undefined || ref.digest !== undefined) {
    throw new UserError(`give the repository without a tag or digest: ${ref.registry}/${ref.repository}`);
  }
  const filter = { branch: values.branch, os: values.os, kernel: values.kernel };
  checkCatalogFilter(filter);
  const arch = values.arch !== undefined ? normalizeArch(values.arch) : undefined;
  const kube = new Kube(values.kubeconfig);
  const client = await registryClient(ref, values, kube);
  try {
    const tags = await client.listTags(ref.repository);
    const summary = summarizeCatalog(tags, filter);
    let matches: { tag: string; branch: string; kernel: string; osTag: string; platforms?: Platform[] }[] =
      summary.matches.map((t) => ({ tag: formatPrecompiledTag(t), ...t }));
    if (arch !== undefined) {
      // Manifests only for the tags the other filters kept.
      const platforms = await mapLimit(matches, 8, (m) => client.platforms(ref.repository, m.tag));
      matches = matches
        .map((m, i) => ({ ...m, platforms: platforms[i] ?? [] }))
        .filter((m) => m.platforms.some((p) => p.os === "linux" && p.architecture === arch));
    }
    const name = `${ref.registry}/${ref.repository}`;
    const result = {
      name,
      latestTag: summary.latestTag ?? null,
      tagCount: summary.tagCount,
      precompiledTagCount: summary.precompiledTagCount,
      filter: Object.fromEntries(Object.entries({ ...filter, arch }).filter(([, v]) => v !== undefined)),
      matchingTags: matches,
      requests: client.requestCounts(),
    };
    if (format !== "table") {
      write(formatData(result, format));
      return 0;
    }
    const shown = Object.entries(result.filter).map(([k, v]) => `--${k} ${v}`).join(" ");
    write(formatTable(["", ""], [
      ["Name:", name],
      ["Latest tag:", summary.latestTag ?? "(none)"],
      ["Tags:", `${summary.tagCount} (${summary.precompiledTagCount} precompiled)`],
      ["Matching:", `${matches.length} precompiled tag${matches.length === 1 ? "" : "s"}${shown ? ` (${shown})` : ""}`],
    ]).split("\n").slice(1).join("\n"));
    if (matches.length > 0) {
      write("\n");
      const header = ["BRANCH", "OS", "KERNEL", "TAG", ...(arch ? ["PLATFORMS"] : [])];
      write(formatTable(header, matches.map((m) => [m.branch, m.osTag, m.kernel, m.tag, ...(arch ? [(m.platforms ?? []).map(formatPlatform).join(",")] : [])])));
    }
    if (values.verbose) process.stderr.write(`registry requests: ${client.requests} ${JSON.stringify(client.requestCounts())}\n`);
    return 0;
  } finally {
    await client.close();
    await kube.close();
  }
}

// ---- check ----

interface CheckProblem { node: string; problem: string }

async function targetsFromCluster(kube: Kube): Promise<{ targets: CheckTarget[]; problems: CheckProblem[]; notes: string[] }> {
  const nodes = await kube.get().list<Node>("/api/v1/nodes", { labelSelector: `${NFD_NVIDIA_PCI_LABEL}=true` });
  const notes: string[] = [];
  const prepared = nodes.items.map((n) => {
    const { node, kernelFrom } = withKernelFallback(n);
    if (kernelFrom === "nodeInfo") notes.push(`node ${n.metadata.name}: no NFD kernel label, kernel taken from status.nodeInfo.kernelVersion`);
    return node;
  });
  const { gpuNodes, problems } = classifyNodes(prepared);
  const out: CheckProblem[] = problems.map((p: GpuNodeProblem) => ({ node: p.name, problem: p.problem }));
  const targets: CheckTarget[] = [];
  for (const n of gpuNodes) {
    if (!n.arch) out.push({ node: n.name, problem: `GPU node ${n.name} has no ${ARCH_LABEL} label and no nodeInfo.architecture` });
    else targets.push({ node: n.name, kernel: n.kernel, osTag: n.osTag, arch: normalizeArch(n.arch) });
  }
  return { targets, problems: out.sort((a, b) => a.node.localeCompare(b.node)), notes };
}

async function runCheck(argv: string[]): Promise<number> {
  const { values, positionals } = parseFlags(argv, {
    ...registryFlags,
    branch: { type: "string" }, repository: { type: "string" }, image: { type: "string" },
    kernel: { type: "string" }, os: { type: "string" }, arch: { type: "string" },
  }, usage);
  const format: OutputFormat = outputFormat(values.output);
  if (positionals.length > 0) throw new UserError(`precompiled check takes no arguments (got "${positionals.join(" ")}"); use --repository and --image`);
  if (values.branch === undefined) throw new UserError("give the driver branch to check with --branch, e.g. --branch 535");
  checkDriverBranch(values.branch);
  const branch = values.branch;
  const repository = (values.repository ?? NVIDIA_DRIVER_REPOSITORY).replace(/\/+$/, "");
  const image = values.image ?? NVIDIA_DRIVER_IMAGE;
  const ref = parseImageRef(`${repository}/${image}`);
  if (ref.tag !== undefined || ref.digest !== undefined) throw new UserError(`--repository and --image name a repository, not a tag: ${repository}/${image}`);
  const byHand = values.kernel !== undefined || values.os !== undefined;
  if (byHand && (values.kernel === undefined || values.os === undefined)) {
    throw new UserError("checking by hand needs both --kernel (uname -r) and --os (like ubuntu22.04); --arch defaults to amd64");
  }
  if (!byHand && values.arch !== undefined) throw new UserError("--arch goes with --kernel and --os; without them the cluster's nodes say their architecture");

  const kube = new Kube(values.kubeconfig);
  let client: RegistryClient | undefined;
  try {
    let targets: CheckTarget[];
    let problems: CheckProblem[] = [];
    let notes: string[] = [];
    if (byHand) {
      parseKernel(values.kernel!);
      parseOsTag(values.os!);
      targets = [{ node: "(given)", kernel: values.kernel!, osTag: values.os!, arch: normalizeArch(values.arch ?? "amd64") }];
    } else {
      ({ targets, problems, notes } = await targetsFromCluster(kube));
    }
    const planned: Omit<CheckRow, "available">[] = [];
    for (const t of targets) {
      try {
        planned.push(planCheck(t, branch, repository));
      } catch (err) {
        if (!(err instanceof UserError) || byHand) throw err;
        problems.push({ node: t.node, problem: `GPU node ${t.node}: ${err.message}` });
      }
    }
    client = await registryClient(ref, values, kube);
    const keys = [...new Set(planned.map((p) => `${p.tag} ${p.arch}`))];
    const found = new Map<string, boolean>();
    // Large clusters need many tags: one paged listing rules out the missing
    // ones, so manifests are read only for tags that exist.
    const uniqueTags = [...new Set(planned.map((p) => p.tag))];
    const listed = uniqueTags.length >= 64 ? await client.tagsPresent(ref.repository, uniqueTags) : undefined;
    const answers = await mapLimit(keys, 8, async (k) => {
      const [tag, arch] = k.split(" ") as [string, string];
      if (listed && !listed.has(tag)) return false;
      return client!.hasTag(ref.repository, tag, arch);
    });
    keys.forEach((k, i) => found.set(k, answers[i] ?? false));
    if (answers.some((a) => !a) && !(await client.repositoryExists(ref.repository))) {
      throw new UserError(`repository ${ref.repository} does not exist on ${ref.registry}: check --repository (${repository}) and --image (${image})`, 1);
    }
    const rows: CheckRow[] = planned.map((p) => ({ ...p, available: found.get(`${p.tag} ${p.arch}`) ?? false }));
    const code = checkExitCode(rows, problems.length);
    const custom = !isNvidiaRepository(repository);
    if (format !== "table") {
      write(formatData({
        image: `${ref.registry}/${ref.repository}`, branch, nodes: rows, problems, notes,
        allAvailable: code === 0, requests: client.requestCounts(),
      }, format));
      return code;
    }
    if (rows.length > 0) {
      write(formatTable(["NODE", "KERNEL", "OS", "ARCH", "TAG", "PUBLISHED", "IN REGISTRY"], rows.map((r) => [
        r.node, r.kernel, r.osTag, r.arch, r.tag,
        custom ? "n/a (custom)" : r.published ? "yes" : "no",
        r.available ? "yes" : "no",
      ])));
    } else if (problems.length === 0) {
      write(`no GPU nodes (label ${NFD_NVIDIA_PCI_LABEL}=true) in the cluster\n`);
    }
    const reasons = [...new Set(rows.filter((r) => !r.available).flatMap((r) => r.reasons))];
    for (const r of reasons) write(`note: ${r}\n`);
    for (const n of notes) write(`note: ${n}\n`);
    for (const p of problems) write(`problem: ${p.problem}\n`);
    const have = rows.filter((r) => r.available).length;
    const total = rows.length + problems.length;
    write(`${have} of ${total} node${total === 1 ? "" : "s"} ha${total === 1 ? "s" : "ve"} a precompiled ${branch} image in ${ref.registry}/${ref.repository}\n`);
    if (values.verbose) process.stderr.write(`registry requests: ${client.requests} ${JSON.stringify(client.requestCounts())}\n`);
    return code;
  } finally {
    await client?.close();
    await kube.close();
  }
}

export const precompiledCommand: Command = {
  name: "precompiled",
  summary: "List precompiled driver images in a registry; check that every GPU node has one",
  usage,
  async run(argv) {
    const [sub, ...rest] = argv;
    if (sub === "list") return runList(rest);
    if (sub === "check") return couldNotCheck(() => runCheck(rest));
    if (sub === "build") return precompiledBuild(rest);
    throw new UserError(`${sub === undefined ? "missing subcommand" : `unknown subcommand "${sub}"`}: use 'gpuop precompiled list', 'gpuop precompiled check' or 'gpuop precompiled build'\n\n${usage}`);
  },
};
