import { spawn } from "node:child_process";
import { accessSync, constants, existsSync, statSync } from "node:fs";
import { delimiter, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import {
  BUILD_MODULE_TYPES, BUILDERS, DEFAULT_BUILD_OS_TAG, DEFAULT_CUDA_VERSIONS, DRIVER_IMAGE_NAME, isBuilder, kernelTargets, osTagOfContext,
  planBuild, shellQuote, type BuildPlan, type Builder, type KernelTarget,
} from "../core/build-plan.ts";
import { withKernelFallback } from "../core/catalog.ts";
import { UserError } from "../core/errors.ts";
import { classifyNodes, NFD_NVIDIA_PCI_LABEL } from "../core/gpu-node.ts";
import { parseImageRef } from "../core/image.ts";
import { parseOsTag } from "../core/os.ts";
import { KubeClient } from "../kube/client.ts";
import type { Node } from "../kube/types.ts";
import { RegistryClient } from "../registry/client.ts";
import { dockerConfigCredentials } from "../registry/credentials.ts";
import { parseFlags } from "./command.ts";

/** images/driver, shipped beside src/ and dist/ (both two levels below the package root). */
export const driverContextsRoot = fileURLToPath(new URL("../../images/driver/", import.meta.url));

const usage = `Usage:
  gpuop precompiled build --kernel K --branch B --registry R [--os OS] [flags]
  gpuop precompiled build --missing-from-cluster --branch B --registry R [flags]

Builds a precompiled driver image for a kernel NVIDIA does not publish, from
images/driver/<os>/precompiled, tagged <registry>/${DRIVER_IMAGE_NAME}:<branch>-<kernel>-<os-tag>
(the seed's "Building a Custom Driver Container Image"). Every input is checked
before anything runs.

  --kernel <release>        the node's \`uname -r\`, e.g. 5.15.0-1033-aws
  --branch <B>              driver branch, e.g. 535
  --registry <R>            your private registry and path, e.g. registry.example.com/gpu
  --os <os-tag>             ${Object.keys(DEFAULT_CUDA_VERSIONS).join(" or ")} (default: from --context, else ${DEFAULT_BUILD_OS_TAG})
  --context <dir>           build context (default: images/driver/<os>/precompiled of gpuop)
  --cuda-version <V>        CUDA base image version (default ${Object.entries(DEFAULT_CUDA_VERSIONS).map(([o, v]) => `${v} for ${o}`).join(", ")})
  --builder <name>          ${BUILDERS.join(", ")} (default docker)
  --kernel-module-type <T>  ${BUILD_MODULE_TYPES.join(", ")}: which of Canonical's module flavours the image
                            carries (default all: each node picks, open where its GPU needs it)
  --push                    push the image after building it
  --dry-run                 print the commands, run nothing

  --missing-from-cluster    for each kernel and OS of the cluster's GPU nodes (label
                            ${NFD_NVIDIA_PCI_LABEL}=true) whose image is not in
                            --registry, build and push one
  --selector <labels>       only GPU nodes also matching this label selector
  --kubeconfig <file>       kubeconfig (default: $KUBECONFIG, ~/.kube/config)
  --docker-config <file>    registry credentials (default: ~/.docker/config.json when present)
  --plain-http              speak http to the registry (local registries)
  --insecure                do not verify the registry's TLS certificate`;

const flags = {
  kernel: { type: "string" }, branch: { type: "string" }, registry: { type: "string" }, os: { type: "string" },
  context: { type: "string" }, "cuda-version": { type: "string" }, builder: { type: "string" },
  "kernel-module-type": { type: "string" },
  push: { type: "boolean" }, "dry-run": { type: "boolean" },
  "missing-from-cluster": { type: "boolean" }, selector: { type: "string" }, kubeconfig: { type: "string" },
  "docker-config": { type: "string" }, "plain-http": { type: "boolean" }, insecure: { type: "boolean" },
} as const;

/** Where output goes; tests pass their own. */
export interface BuildIo {
  out(text: string): void;
  err(text: string): void;
}
const processIo: BuildIo = { out: (t) => process.stdout.write(t), err: (t) => process.stderr.write(t) };

function onPath(command: string): boolean {
  for (const dir of (process.env.PATH ?? "").split(delimiter)) {
    if (dir === "") continue;
    try {
      accessSync(join(dir, command), constants.X_OK);
      return true;
    } catch {
      // not in this folder
    }
  }
  return false;
}

function checkContext(context: string): void {
  if (!existsSync(context) || !statSync(context).isDirectory()) {
    throw new UserError(`build context ${context} is not a folder: give --context, or --os ${Object.keys(DEFAULT_CUDA_VERSIONS).join("/")} for gpuop's own`);
  }
  if (!existsSync(join(context, "Dockerfile"))) throw new UserError(`build context ${context} has no Dockerfile`);
}

function contextFor(osTag: string, explicit: string | undefined): string {
  if (explicit !== undefined) return explicit;
  const context = join(driverContextsRoot, osTag, "precompiled");
  if (!existsSync(context)) {
    throw new UserError(`gpuop has no build context for ${osTag}: use --os ${Object.keys(DEFAULT_CUDA_VERSIONS).join(" or ")}, or give your own --context`);
  }
  return context;
}

/** Runs one command with the terminal's output; its exit status. */
function runCommand(argv: string[]): Promise<number> {
  return new Promise((done, fail) => {
    const child = spawn(argv[0]!, argv.slice(1), { stdio: "inherit" });
    child.on("error", fail);
    child.on("exit", (code, signal) => done(code ?? (signal ? 128 : 1)));
  });
}

async function execute(plan: BuildPlan, dryRun: boolean, io: BuildIo): Promise<number> {
  for (const argv of plan.commands) {
    io.out(`${shellQuote(argv)}\n`);
    if (dryRun) continue;
    const code = await runCommand(argv);
    if (code !== 0) {
      io.err(`gpuop precompiled build: '${argv[0]} ${argv[1]}' failed with exit status ${code} for ${plan.image}\n`);
      return code;
    }
  }
  return 0;
}

/** `gpuop precompiled build`: hooked under the `precompiled` command. */
export async function precompiledBuild(argv: string[], io: BuildIo = processIo): Promise<number> {
  const { values: v, positionals } = parseFlags(argv, flags, usage);
  if (v.help) {
    io.out(`${usage}\n`);
    return 0;
  }
  if (positionals.length > 0) throw new UserError(`precompiled build takes no arguments (got "${positionals.join(" ")}")\n\n${usage}`);
  if (v.branch === undefined) throw new UserError("give the driver branch with --branch, e.g. --branch 535");
  if (v.registry === undefined) throw new UserError("give your private registry with --registry, e.g. --registry registry.example.com/gpu");
  const builderName = v.builder ?? "docker";
  if (!isBuilder(builderName)) throw new UserError(`--builder "${builderName}" is not one of ${BUILDERS.join(", ")}`);
  const builder: Builder = builderName;
  const contextOs = v.context !== undefined ? osTagOfContext(resolve(v.context)) : undefined;
  if (v.os !== undefined && contextOs !== undefined && v.os !== contextOs) {
    throw new UserError(`--os ${v.os} does not match --context ${v.context}, which is for ${contextOs}: drop --os or fix it`);
  }
  const common = { registry: v.registry, branch: v.branch, cudaVersion: v["cuda-version"], kernelModuleType: v["kernel-module-type"], builder };

  if (!v["missing-from-cluster"]) {
    if (v.kernel === undefined) throw new UserError("give the kernel with --kernel (the node's `uname -r`, e.g. 5.15.0-1033-aws), or use --missing-from-cluster");
    if (v.selector !== undefined) throw new UserError("--selector goes with --missing-from-cluster");
    const osTag = v.os ?? contextOs ?? DEFAULT_BUILD_OS_TAG;
    parseOsTag(osTag);
    const plan = planBuild({ ...common, kernel: v.kernel, osTag, push: v.push ?? false, context: contextFor(osTag, v.context) });
    checkContext(plan.commands[0]!.at(-1)!);
    if (!v["dry-run"] && !onPath(builder)) throw new UserError(`${builder} is not installed (not on PATH): install it, or pick another with --builder ${BUILDERS.join("|")}`);
    return execute(plan, v["dry-run"] ?? false, io);
  }

  if (v.kernel !== undefined || v.os !== undefined || v.context !== undefined) {
    throw new UserError("--missing-from-cluster takes each kernel and OS from the cluster's GPU nodes: drop --kernel, --os and --context");
  }
  // Checks the shared inputs before touching the cluster.
  planBuild({ ...common, kernel: "5.15.0-69-generic", osTag: DEFAULT_BUILD_OS_TAG, push: true, context: "." });
  if (!v["dry-run"] && !onPath(builder)) throw new UserError(`${builder} is not installed (not on PATH): install it, or pick another with --builder ${BUILDERS.join("|")}`);
  const repo = parseImageRef(`${v.registry.replace(/\/+$/, "")}/${DRIVER_IMAGE_NAME}`);

  const kube = KubeClient.load(v.kubeconfig ? { kubeconfig: v.kubeconfig } : {});
  let registry: RegistryClient | undefined;
  try {
    const selector = [`${NFD_NVIDIA_PCI_LABEL}=true`, ...(v.selector ? [v.selector] : [])].join(",");
    const nodes = await kube.list<Node>("/api/v1/nodes", { labelSelector: selector });
    const { gpuNodes, problems } = classifyNodes(nodes.items.map((n) => withKernelFallback(n).node));
    for (const p of problems) io.err(`skipped: ${p.problem}\n`);
    const targets = kernelTargets(gpuNodes.map((n) => ({ name: n.name, kernel: n.kernel, osTag: n.osTag })));
    if (targets.length === 0) {
      io.out(`no GPU nodes (label ${selector}) in the cluster: nothing to build\n`);
      return problems.length > 0 ? 1 : 0;
    }
    const credentials = dockerConfigCredentials(repo.registry, v["docker-config"]);
    registry = new RegistryClient({
      registry: repo.registry, plainHttp: v["plain-http"] ?? false, insecure: v.insecure ?? false,
      ...(credentials ? { credentials } : {}),
    });
    let failed = problems.length > 0;
    const missing: { target: KernelTarget; plan: BuildPlan }[] = [];
    for (const target of targets) {
      let plan: BuildPlan;
      try {
        plan = planBuild({ ...common, kernel: target.kernel, osTag: target.osTag, push: true, context: contextFor(target.osTag, undefined) });
      } catch (err) {
        if (!(err instanceof UserError)) throw err;
        io.err(`skipped ${target.kernel} (${target.osTag}, nodes ${target.nodes.join(", ")}): ${err.message}\n`);
        failed = true;
        continue;
      }
      if (await registry.hasTag(repo.repository, plan.tag)) io.out(`present: ${plan.image} (nodes ${target.nodes.join(", ")})\n`);
      else missing.push({ target, plan });
    }
    for (const { target, plan } of missing) {
      io.out(`missing: ${plan.image} (nodes ${target.nodes.join(", ")})\n`);
      if ((await execute(plan, v["dry-run"] ?? false, io)) !== 0) failed = true;
    }
    io.out(`${missing.length} of ${targets.length} kernel${targets.length === 1 ? "" : "s"} missing from ${repo.registry}/${repo.repository}${v["dry-run"] ? " (dry run: nothing built)" : ""}\n`);
    return failed ? 1 : 0;
  } finally {
    await registry?.close();
    await kube.close();
  }
}
