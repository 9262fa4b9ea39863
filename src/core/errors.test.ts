import { test } from "node:test";
import assert from "node:assert/strict";
import { UserError } from "./errors.ts";

test("a UserError names itself, keeps the message, and exits 2 unless told otherwise", () => {
  const e = new UserError("spec.driver.version must be a string");
  assert.ok(e instanceof Error);
  assert.equal(e.name, "UserError");
  assert.equal(String(e), "UserError: spec.driver.version must be a string");
  assert.equal(e.exitCode, 2);
  assert.equal(new UserError("could not check", 3).exitCode, 3);
});
