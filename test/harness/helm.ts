import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parse as parseYaml, parseAllDocuments } from "yaml";
import { repoRoot, toolPath } from "./tools.ts";

export const chartDir = join(repoRoot, "deployments/gpu-operator");

export interface HelmResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * The real helm with its config, cache and data in a temp folder (so nothing
 * touches ~/.config or ~/.cache), acting as the cluster admin who installs the chart.
 */
export class Helm {
  readonly home = mkdtempSync(join(tmpdir(), "gpuop-helm-"));
  private readonly kubeconfig: string;

  constructor(kubeconfig: string) {
    this.kubeconfig = kubeconfig;
  }

  run(args: string[]): Promise<HelmResult> {
    const env = {
      PATH: process.env.PATH ?? "/usr/bin:/bin",
      HOME: this.home,
      HELM_CONFIG_HOME: join(this.home, "config"),
      HELM_CACHE_HOME: join(this.home, "cache"),
      HELM_DATA_HOME: join(this.home, "data"),
      KUBECONFIG: this.kubeconfig,
    };
    return new Promise((resolve) => {
      execFile(toolPath("helm"), args, { env, maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
        const code = err ? (typeof (err as { code?: unknown }).code === "number" ? (err as { code: number }).code : 1) : 0;
        resolve({ code, stdout, stderr });
      });
    });
  }

  /** Runs helm and throws with its output unless it succeeds. */
  async ok(args: string[]): Promise<string> {
    const r = await this.run(args);
    if (r.code !== 0) throw new Error(`helm ${args.join(" ")} exited ${r.code}:\n${r.stderr}${r.stdout}`);
    return r.stdout;
  }

  /** `helm template` of the chart folder, parsed into objects. */
  async template(args: string[] = []): Promise<KubeManifest[]> {
    const out = await this.ok(["template", "gpu-operator", chartDir, "--namespace", "gpu-operator", ...args]);
    return parseAllDocuments(out).map((d) => d.toJSON() as KubeManifest | null).filter((o): o is KubeManifest => o !== null);
  }

  cleanup(): void {
    rmSync(this.home, { recursive: true, force: true });
  }
}

export interface KubeManifest {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  [field: string]: unknown;
}

/** A static HTTP server on 127.0.0.1 serving one folder's files: a chart repository (index.yaml + .tgz). */
export async function serveFolder(dir: string): Promise<{ url: string; close(): Promise<void> }> {
  const server: Server = createServer((req, res) => {
    const name = decodeURIComponent((req.url ?? "/").split("?")[0] ?? "/").replace(/^\/+/, "");
    if (name === "" || name.includes("/") || name.startsWith(".")) {
      res.writeHead(404).end();
      return;
    }
    try {
      const body = readFileSync(join(dir, name));
      res.writeHead(200, { "content-type": name.endsWith(".yaml") ? "application/yaml" : "application/gzip" }).end(body);
    } catch {
      res.writeHead(404).end();
    }
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${port}`,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

/**
 * A kubeconfig that authenticates with a bearer token only (a ServiceAccount's),
 * with the server and CA of an admin kubeconfig.
 */
export function writeTokenKubeconfig(adminKubeconfig: string, token: string, path: string): void {
  const admin = parseYaml(readFileSync(adminKubeconfig, "utf8")) as {
    "current-context": string;
    contexts: { name: string; context: { cluster: string } }[];
    clusters: { name: string; cluster: Record<string, string> }[];
  };
  const ctx = admin.contexts.find((c) => c.name === admin["current-context"])!.context;
  const cluster = admin.clusters.find((c) => c.name === ctx.cluster)!.cluster;
  const ca = cluster["certificate-authority-data"] ?? readFileSync(cluster["certificate-authority"]!).toString("base64");
  const config = {
    apiVersion: "v1",
    kind: "Config",
    clusters: [{ name: "cluster", cluster: { server: cluster.server, "certificate-authority-data": ca } }],
    users: [{ name: "service-account", user: { token } }],
    contexts: [{ name: "service-account", context: { cluster: "cluster", user: "service-account" } }],
    "current-context": "service-account",
  };
  writeFileSync(path, JSON.stringify(config, null, 2), { mode: 0o600 });
}
