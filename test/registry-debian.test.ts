// Debian's docker-registry (distribution 2.8) as a second, older peer: it does
// not page tag lists and returns tags in storage order. The client must still
// return every tag once, sorted. Installed by the harness with apt-get when
// missing; skipped with a message where apt is not available.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { ensureDebianRegistry, localClient, pushImage, pushIndex, startRegistry, type LocalRegistry } from "./harness/registry.ts";

const binary = ensureDebianRegistry();
const skip = binary ? false : "Debian's docker-registry is not installed and apt-get is unavailable (apt-get install -y docker-registry)";
const tags = Array.from({ length: 1200 }, (_, i) => `535-5.15.0-${(i * 7919) % 1200}-generic-ubuntu22.04`);
let reg: LocalRegistry | undefined;

before(async () => {
  if (!binary) return;
  reg = await startRegistry({ flavor: "debian" });
  const c = localClient(reg);
  try {
    await pushImage(c, "nvidia/driver", tags, { concurrency: 16 });
    await pushIndex(c, "nvidia/driver", "multi", [{ os: "linux", architecture: "amd64" }, { os: "linux", architecture: "arm64" }]);
  } finally {
    await c.close();
  }
});

after(async () => {
  await reg?.stop();
});

test("lists every tag of a registry that ignores n, sorted, and reads an index's platforms", { skip }, async () => {
  const c = localClient(reg!);
  try {
    const got = await c.listTags("nvidia/driver", { pageSize: 100 });
    assert.equal(got.length, 1201);
    assert.deepEqual(got, [...tags, "multi"].sort());
    assert.deepEqual((await c.platforms("nvidia/driver", "multi"))?.map((p) => p.architecture), ["amd64", "arm64"]);
    await assert.rejects(c.listTags("nvidia/nope"), /repository nvidia\/nope does not exist on 127.0.0.1:\d+/);
  } finally {
    await c.close();
  }
});
