// Static checks of the operator image's build (no Docker engine runs here):
// the final stage has only production dependencies, so every package the
// compiled operator imports at run time must be one of them.
import { test } from "node:test";
import assert from "node:assert/strict";
import { builtinModules } from "node:module";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { repoRoot } from "./harness/tools.ts";

const dockerfile = readFileSync(join(repoRoot, "images/operator/Dockerfile"), "utf8");
const instructions = dockerfile.split("\n").filter((l) => l.trim() && !l.trimStart().startsWith("#"));
const stages = instructions.reduce<string[][]>((acc, l) => {
  if (/^FROM\s/i.test(l)) acc.push([]);
  acc.at(-1)?.push(l);
  return acc;
}, []);

test("the Dockerfile compiles, installs production dependencies, and ships them with dist and no package manager, as a numeric non-root user", () => {
  // Pinned by digest: a rebuild does not silently pick up another base.
  assert.match(dockerfile, /^ARG NODE_IMAGE=node:24[-\w.]*@sha256:[0-9a-f]{64}$/m);
  assert.equal(stages.length, 3);
  const [build, deps, final] = stages as [string[], string[], string[]];
  assert.ok(build.some((l) => /npm ci\b/.test(l) && !l.includes("--omit=dev")));
  assert.ok(build.some((l) => /tsc -p tsconfig\.build\.json/.test(l)));
  assert.ok(deps.some((l) => /npm ci\b.*--omit=dev/.test(l)));
  assert.ok(!final.some((l) => /\bnpm (ci|install)\b/.test(l)), "nothing installed in the final stage");
  // npm and its kin are removed from the runtime image.
  const removal = final.find((l) => /^RUN rm -rf/.test(l)) ?? "";
  for (const path of ["/usr/local/lib/node_modules", "/usr/local/bin/npm", "/usr/local/bin/npx", "/usr/local/bin/corepack"]) assert.ok(removal.includes(path), path);
  assert.ok(final.some((l) => /^COPY --from=build \/src\/dist \.\/dist$/.test(l)));
  assert.ok(final.some((l) => /^COPY --from=deps \/app\/node_modules \.\/node_modules$/.test(l)));
  assert.ok(!final.some((l) => /COPY (\.|src)\b/.test(l)), "no sources in the final stage");
  const user = final.filter((l) => l.startsWith("USER ")).at(-1);
  assert.match(user ?? "", /^USER [1-9]\d*:[1-9]\d*$/, "numeric, so runAsNonRoot can be verified");
  assert.equal(final.at(-1), 'ENTRYPOINT ["node", "--enable-source-maps", "dist/cli/main.js", "operator"]');
});

test(".dockerignore lets through exactly what the Dockerfile copies", () => {
  const ignore = readFileSync(join(repoRoot, ".dockerignore"), "utf8").split("\n").filter((l) => l && !l.startsWith("#"));
  assert.equal(ignore[0], "*");
  const allowed = ignore.filter((l) => l.startsWith("!")).map((l) => l.slice(1).replace(/\/$/, ""));
  const copied = instructions.filter((l) => /^COPY (?!--from)/.test(l)).flatMap((l) => l.split(/\s+/).slice(1, -1));
  assert.deepEqual([...new Set(copied)].sort(), allowed.sort());
});

test("every package the operator imports at run time is a production dependency", () => {
  const pkg = JSON.parse(readFileSync(join(repoRoot, "package.json"), "utf8")) as { dependencies: Record<string, string> };
  const builtins = new Set(builtinModules);
  const files = readdirSync(join(repoRoot, "src"), { recursive: true, encoding: "utf8" }).filter((f) => f.endsWith(".ts") && !f.endsWith(".test.ts"));
  assert.ok(files.length > 10);
  const used = new Set<string>();
  for (const f of files) {
    const text = readFileSync(join(repoRoot, "src", f), "utf8");
    // Type-only imports are erased by tsc and need nothing at run time.
    for (const m of text.matchAll(/^(?:import|export)\s+(?!type\s)[^;]*?\sfrom\s+"([^"]+)"|^import\s+"([^"]+)"/gm)) {
      const spec = m[1] ?? m[2]!;
      if (spec.startsWith(".") || spec.startsWith("node:") || builtins.has(spec)) continue;
      used.add(spec.startsWith("@") ? spec.split("/").slice(0, 2).join("/") : spec.split("/")[0]!);
    }
  }
  assert.ok(used.size > 0, "found the runtime imports");
  for (const name of used) assert.ok(pkg.dependencies[name], `src imports ${name}, which npm ci --omit=dev would not install`);
});
