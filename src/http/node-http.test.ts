import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { test } from "node:test";

test("the operator's modules leave Node's bundled undici unloaded (megabytes of resident memory)", () => {
  // A fresh process: this test runner has imported node:http itself, and so loaded undici already.
  const operator = fileURLToPath(new URL("../cli/operator.ts", import.meta.url));
  const script = `await import(${JSON.stringify(operator)}); console.log(JSON.stringify(process.moduleLoadList.filter((m) => m.includes("undici"))));`;
  const loaded = JSON.parse(execFileSync(process.execPath, ["--input-type=module", "-e", script], { encoding: "utf8" })) as string[];
  assert.deepEqual(loaded, []);
});
