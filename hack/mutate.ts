// Mutation score of src/core, module by module: each module's mutants run against the
// module's own unit tests only (src/core/x.ts against src/core/x.test.ts, plus the few
// companions named below; the operands folder against operands.test.ts; a module without a
// test file of its own against every core test that covers it). A mutant another module's tests happen to kill does not
// count, so the total is a lower bound of what the whole suite kills — and a run takes
// minutes per module instead of hours for the whole suite on every mutant.
//
//   node hack/mutate.ts [module.ts ...]    (default: every module of src/core)
//
// Prints each module's score and the total, and exits 1 when the total is under the
// config's break threshold. Results are kept per module under .tmp/stryker/modules, so a
// rerun tests only what changed.
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, relative } from "node:path";

const root = join(import.meta.dirname, "..");
const core = join(root, "src/core");
const out = join(root, ".tmp/stryker/modules");
const base = JSON.parse(readFileSync(join(root, "stryker.config.json"), "utf8")) as Record<string, unknown> & {
  tap: { testFiles: string[] };
  thresholds: { break: number };
};
delete base["$schema"];

interface Scope {
  name: string;
  mutate: string[];
  tests: string[];
}

/** Test files that are a module's own besides its namesake: validate.ts's security checks are tested in security.test.ts. */
const COMPANIONS: Record<string, string[]> = { "validate.ts": ["security.test.ts"] };

function scopes(): Scope[] {
  const rel = (p: string) => relative(root, p);
  const list: Scope[] = [];
  for (const f of readdirSync(core).sort()) {
    if (!f.endsWith(".ts") || f.endsWith(".test.ts") || f === "index.ts") continue;
    const own = join(core, f.replace(/\.ts$/, ".test.ts"));
    const tests = existsSync(own) ? [rel(own), ...(COMPANIONS[f] ?? []).map((t) => rel(join(core, t)))] : base.tap.testFiles;
    list.push({ name: f, mutate: [rel(join(core, f))], tests });
  }
  const operands = join(core, "operands");
  list.push({ name: "operands/", mutate: [`${rel(operands)}/*.ts`, `!${rel(operands)}/*.test.ts`], tests: [`${rel(operands)}/operands.test.ts`] });
  return list;
}

interface Counts {
  killed: number;
  timeout: number;
  survived: number;
  noCoverage: number;
}

/** Terminal colour codes, which Stryker's table may carry. */
const COLOUR = new RegExp(`${String.fromCharCode(27)}\\[[0-9;]*m`, "g");

/** The "All files" row of Stryker's clear-text table: score, covered, killed, timeout, survived, no cov, errors. */
function parseCounts(text: string): Counts | undefined {
  const row = text.split("\n").map((l) => l.replace(COLOUR, "")).find((l) => /^All files\s*\|/.test(l));
  if (!row) return undefined;
  const cells = row.split("|").map((c) => c.trim());
  const [killed, timeout, survived, noCoverage] = cells.slice(3, 7).map(Number);
  if ([killed, timeout, survived, noCoverage].some((n) => n === undefined || Number.isNaN(n))) return undefined;
  return { killed: killed!, timeout: timeout!, survived: survived!, noCoverage: noCoverage! };
}

const score = (c: Counts) => (100 * (c.killed + c.timeout)) / Math.max(1, c.killed + c.timeout + c.survived + c.noCoverage);

const wanted = process.argv.slice(2).map((a) => relative(core, join(root, a)) || a);
const chosen = scopes().filter((s) => wanted.length === 0 || wanted.some((w) => s.name === w || (s.name === "operands/" && w.startsWith("operands"))));
if (chosen.length === 0) {
  console.error(`no module of src/core matches ${wanted.join(", ")}`);
  process.exit(2);
}
mkdirSync(out, { recursive: true });
const total: Counts = { killed: 0, timeout: 0, survived: 0, noCoverage: 0 };
const rows: string[] = [];
for (const s of chosen) {
  const id = s.name.replace(/[/.]/g, "_");
  const config = join(out, `${id}.config.json`);
  writeFileSync(config, JSON.stringify({ ...base, mutate: s.mutate, tap: { ...base.tap, testFiles: s.tests }, incrementalFile: `.tmp/stryker/modules/${id}.json`, thresholds: { ...base.thresholds, break: null } }, null, 2));
  console.log(`--- ${s.name}: mutants against ${s.tests.join(", ")}`);
  const r = spawnSync("npx", ["stryker", "run", config, ...(process.env.STRYKER_FLAGS ?? "").split(" ").filter(Boolean)], { cwd: root, encoding: "utf8", stdio: ["ignore", "pipe", "inherit"], maxBuffer: 256 * 1024 * 1024 });
  writeFileSync(join(out, `${id}.log`), r.stdout ?? "");
  const c = parseCounts(r.stdout ?? "");
  if (r.status !== 0 || !c) {
    console.error(`stryker failed for ${s.name} (exit ${r.status}); its output is in ${relative(root, join(out, `${id}.log`))}`);
    process.exit(2);
  }
  for (const k of Object.keys(total) as (keyof Counts)[]) total[k] += c[k];
  rows.push(`${s.name.padEnd(20)} ${score(c).toFixed(2).padStart(6)}%  killed ${c.killed + c.timeout}, survived ${c.survived}, no coverage ${c.noCoverage}`);
}
console.log("\nmutation score of src/core, each module against its own tests:");
for (const r of rows) console.log(`  ${r}`);
const all = score(total);
console.log(`  ${"total".padEnd(20)} ${all.toFixed(2).padStart(6)}%  killed ${total.killed + total.timeout} of ${total.killed + total.timeout + total.survived + total.noCoverage}`);
if (all < base.thresholds.break) {
  console.error(`mutation score ${all.toFixed(2)}% is under ${base.thresholds.break}%`);
  process.exit(1);
}
