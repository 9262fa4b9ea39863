// TLS to a real registry serving https with a certificate from a private CA:
// refused without the CA (and the message says what to give), accepted with
// --ca-file's CA or --insecure.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { RegistryClient } from "../src/registry/client.ts";
import { RegistryError } from "../src/registry/errors.ts";
import { pushImage, startRegistry, type LocalRegistry } from "./harness/registry.ts";

let reg: LocalRegistry;

before(async () => {
  reg = await startRegistry({ tls: true });
  const c = new RegistryClient({ registry: reg.host, ca: reg.ca! });
  try {
    await pushImage(c, "nvidia/driver", ["525-5.15.0-69-generic-ubuntu22.04"]);
  } finally {
    await c.close();
  }
});

after(async () => {
  await reg?.stop();
});

test("an untrusted certificate is refused with what to do about it", async () => {
  const c = new RegistryClient({ registry: reg.host });
  try {
    await assert.rejects(c.ping(), (e: unknown) => {
      assert.ok(e instanceof RegistryError);
      assert.equal(e.code, "tls");
      assert.match(e.message, new RegExp(`cannot verify the TLS certificate of registry ${reg.host} \\(\\w+\\): give its CA with --ca-file, or --insecure to skip verification`));
      return true;
    });
  } finally {
    await c.close();
  }
});

test("the CA, or skipping verification, lets the client in", async () => {
  for (const opts of [{ ca: reg.ca! }, { insecure: true }]) {
    const c = new RegistryClient({ registry: reg.host, ...opts });
    try {
      assert.equal(await c.hasTag("nvidia/driver", "525-5.15.0-69-generic-ubuntu22.04", "amd64"), true);
    } finally {
      await c.close();
    }
  }
});

test("plain http spoken to an https registry says to drop --plain-http", async () => {
  const c = new RegistryClient({ registry: reg.host, plainHttp: true });
  try {
    await assert.rejects(c.ping(), (e: unknown) => {
      assert.ok(e instanceof RegistryError);
      assert.match(e.message, /serves https, not plain http: drop --plain-http/);
      return true;
    });
  } finally {
    await c.close();
  }
});
