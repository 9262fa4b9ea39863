import { UserError } from "./errors.ts";
import { parseImageRef } from "./image.ts";
import { parseKernel } from "./kernel.ts";
import { parseOsTag } from "./os.ts";
import { checkDriverBranch, formatPrecompiledTag } from "./tag.ts";

/** Image builders `gpuop precompiled build` drives; all take docker's build flags. */
export const BUILDERS = ["docker", "podman", "buildah"] as const;
export type Builder = (typeof BUILDERS)[number];

/**
 * OS tags with a build context in images/driver/<os-tag>/precompiled, and the
 * CUDA base image version each uses by default (it only picks the base image;
 * the seed's 12.1.0 has no ubuntu24.04 base).
 */
export const DEFAULT_CUDA_VERSIONS: Readonly<Record<string, string>> = {
  "ubuntu22.04": "12.1.0",
  "ubuntu24.04": "12.6.3",
};
export const DEFAULT_BUILD_OS_TAG = "ubuntu22.04";
/** The image name under the private registry, as the seed tags it. */
export const DRIVER_IMAGE_NAME = "driver";
/** Which of Canonical's kernel module flavours the image carries (the context's KERNEL_MODULE_TYPE build arg; all by default). */
export const BUILD_MODULE_TYPES = ["all", "open", "proprietary"] as const;
export type BuildModuleType = (typeof BUILD_MODULE_TYPES)[number];

export interface BuildInput {
  /** Registry and path prefix the image goes under: `registry.example.com/gpu`. */
  registry: string;
  kernel: string;
  branch: string;
  osTag: string;
  /** Defaults per OS tag (DEFAULT_CUDA_VERSIONS). */
  cudaVersion?: string | undefined;
  builder: Builder;
  /** Passed as KERNEL_MODULE_TYPE only when given; the context's default ships both flavours. */
  kernelModuleType?: string | undefined;
  push: boolean;
  /** The build context folder, passed to the builder as is. */
  context: string;
}

export interface BuildPlan {
  /** `<registry>/driver:<branch>-<kernel>-<os-tag>` */
  image: string;
  tag: string;
  /** argv of each command, run in order. */
  commands: string[][];
}

export function isBuilder(s: string): s is Builder {
  return (BUILDERS as readonly string[]).includes(s);
}

const CUDA_VERSION = /^[0-9]+\.[0-9]+(?:\.[0-9]+)?$/;

/** The private registry reference: a registry host with an optional path, no tag or digest. */
export function checkBuildRegistry(registry: string): void {
  if (registry === "") throw new UserError("--registry is empty: give your private registry, like registry.example.com/gpu");
  const trimmed = registry.replace(/\/+$/, "");
  if (/[:@]/.test(trimmed.slice(trimmed.lastIndexOf("/") + 1)) && trimmed.includes("/")) {
    throw new UserError(`--registry "${registry}" carries a tag or digest: give only the registry and path, like registry.example.com/gpu`);
  }
  const ref = parseImageRef(`${trimmed}/${DRIVER_IMAGE_NAME}`);
  if (!trimmed.includes("/") && ref.registry !== trimmed) {
    throw new UserError(
      `--registry "${registry}" is not a registry host: give a host with a dot or port (registry.example.com, localhost:5000, docker.io/<org>), optionally with a path`,
    );
  }
}

/** Ubuntu's precompiled modules exist for its own kernels only: `5.15.0-69-generic`. */
function checkUbuntuKernel(kernel: string, osTag: string): void {
  const k = parseKernel(kernel);
  if (k.style === "rpm" || k.abi === "" || k.flavor === "") {
    throw new UserError(
      `kernel "${kernel}" is not an Ubuntu kernel release (like 5.15.0-69-generic or 6.8.0-1047-oracle), which a ${osTag} image needs: give the node's \`uname -r\``,
    );
  }
}

/**
 * Checks every input and returns the commands that build (and push) the image,
 * exactly the seed's `docker build --build-arg ... -t <image> .`, with the
 * context folder in place of `.`.
 */
export function planBuild(input: BuildInput): BuildPlan {
  checkDriverBranch(input.branch);
  parseOsTag(input.osTag);
  if (input.osTag.startsWith("ubuntu")) checkUbuntuKernel(input.kernel, input.osTag);
  else parseKernel(input.kernel);
  checkBuildRegistry(input.registry);
  if (!isBuilder(input.builder)) {
    throw new UserError(`builder "${String(input.builder)}" is not one of ${BUILDERS.join(", ")}`);
  }
  const cuda = input.cudaVersion ?? DEFAULT_CUDA_VERSIONS[input.osTag];
  if (cuda === undefined) {
    throw new UserError(`no default CUDA base image version for ${input.osTag}: give --cuda-version, like 12.1.0`);
  }
  if (!CUDA_VERSION.test(cuda)) {
    throw new UserError(`--cuda-version "${cuda}" is not a CUDA version like 12.1.0 (see the base-${input.osTag} tags of nvidia/cuda)`);
  }
  const moduleType = input.kernelModuleType;
  if (moduleType !== undefined && !(BUILD_MODULE_TYPES as readonly string[]).includes(moduleType)) {
    throw new UserError(`--kernel-module-type "${moduleType}" is not one of ${BUILD_MODULE_TYPES.join(", ")} (all ships both and lets each node pick)`);
  }
  const tag = formatPrecompiledTag({ branch: input.branch, kernel: input.kernel, osTag: input.osTag });
  const image = `${input.registry.replace(/\/+$/, "")}/${DRIVER_IMAGE_NAME}:${tag}`;
  parseImageRef(image);
  const build = input.builder === "buildah" ? ["buildah", "build"] : [input.builder, "build"];
  const commands = [[
    ...build,
    "--build-arg", `KERNEL_VERSION=${input.kernel}`,
    "--build-arg", `CUDA_VERSION=${cuda}`,
    "--build-arg", `DRIVER_BRANCH=${input.branch}`,
    ...(moduleType !== undefined ? ["--build-arg", `KERNEL_MODULE_TYPE=${moduleType}`] : []),
    "-t", image,
    input.context,
  ]];
  if (input.push) commands.push([input.builder, "push", image]);
  return { image, tag, commands };
}

/** The OS tag a context folder is for: `.../ubuntu24.04/precompiled` -> `ubuntu24.04`. */
export function osTagOfContext(context: string): string | undefined {
  const parts = context.replace(/\/+$/, "").split("/");
  const last = parts.at(-1);
  const os = last === "precompiled" ? parts.at(-2) : last;
  return os !== undefined && /^[a-z]+[0-9]+(?:\.[0-9]+)*$/.test(os) ? os : undefined;
}

/** One kernel and OS some GPU node runs. */
export interface KernelTarget {
  kernel: string;
  osTag: string;
  /** The nodes running it, for the report. */
  nodes: string[];
}

/** Groups nodes by (kernel, OS tag), each group once, in a stable order. */
export function kernelTargets(nodes: readonly { name: string; kernel: string; osTag: string }[]): KernelTarget[] {
  const byKey = new Map<string, KernelTarget>();
  for (const n of nodes) {
    const key = `${n.osTag} ${n.kernel}`;
    const t = byKey.get(key) ?? { kernel: n.kernel, osTag: n.osTag, nodes: [] };
    t.nodes.push(n.name);
    byKey.set(key, t);
  }
  return [...byKey.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([, t]) => ({ ...t, nodes: t.nodes.sort() }));
}

/** A command line as a POSIX shell would need it typed: `--dry-run` prints these. */
export function shellQuote(argv: readonly string[]): string {
  return argv.map((a) => (/^[A-Za-z0-9_@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`)).join(" ");
}
