import { existsSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

/** The checkout's root folder. */
export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "../..");

/** Pinned versions from hack/versions.env. */
export const versions: Record<string, string> = Object.fromEntries(
  readFileSync(join(repoRoot, "hack/versions.env"), "utf8")
    .split("\n")
    .filter((l) => /^[A-Z_]+=/.test(l))
    .map((l) => l.split("=", 2) as [string, string]),
);

const homes: Record<string, [component: string, versionKey: string]> = {
  "kube-apiserver": ["kubernetes", "KUBERNETES_VERSION"],
  "kube-controller-manager": ["kubernetes", "KUBERNETES_VERSION"],
  "kube-scheduler": ["kubernetes", "KUBERNETES_VERSION"],
  kubectl: ["kubernetes", "KUBERNETES_VERSION"],
  etcd: ["etcd", "ETCD_VERSION"],
  kwok: ["kwok", "KWOK_VERSION"],
  kwokctl: ["kwok", "KWOK_VERSION"],
  helm: ["helm", "HELM_VERSION"],
  registry: ["registry", "REGISTRY_VERSION"],
};

/** Absolute path of a binary built by hack/build-tools.sh; throws with the fix if it is missing. */
export function toolPath(binary: keyof typeof homes | string): string {
  const home = homes[binary];
  if (!home) throw new Error(`unknown tool ${binary}`);
  const path = join(repoRoot, ".tools", `${home[0]}-${versions[home[1]]}`, "bin", binary);
  if (!existsSync(path)) throw new Error(`${path} is missing: run 'make tools' (hack/build-tools.sh ${home[0]})`);
  return path;
}
