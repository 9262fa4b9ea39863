// `make bench`: runs each benchmark module in turn and prints its results.
// Benchmarks measure; they assert nothing about time. Add a module to the list.
import type { Benchmark } from "./benchmark.ts";

const modules: (() => Promise<{ benchmark: Benchmark }>)[] = [
  () => import("./registry.bench.ts"),
  () => import("./operator.bench.ts"),
  () => import("./upgrade.bench.ts"),
  () => import("./stack.bench.ts"),
];

const only = process.argv[2];
let failed = 0;
for (const load of modules) {
  const { benchmark } = await load();
  if (only && !benchmark.name.includes(only)) continue;
  console.log(`\n=== ${benchmark.name} ===`);
  try {
    await benchmark.run();
  } catch (err) {
    failed++;
    console.error(`${benchmark.name} failed: ${(err as Error).stack ?? String(err)}`);
  }
}
process.exitCode = failed > 0 ? 1 : 0;
