import { describe, it } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { UserError } from "./errors.ts";
import { imageRefArb } from "./arbitraries.test.ts";
import { driverImageRef, familiarImageRef, formatImageRef, parseImageRef, repositoryRef, type ImageRef } from "./image.ts";

const userError = (message: RegExp) => (err: unknown) => err instanceof UserError && message.test(err.message);
const DIGEST = `sha256:${"0123456789abcdef".repeat(4)}`;

describe("parseImageRef", () => {
  const cases: [string, ImageRef][] = [
    ["nvcr.io/nvidia/driver", { registry: "nvcr.io", repository: "nvidia/driver" }],
    [
      "nvcr.io/nvidia/driver:525-5.15.0-69-generic-ubuntu22.04",
      { registry: "nvcr.io", repository: "nvidia/driver", tag: "525-5.15.0-69-generic-ubuntu22.04" },
    ],
    [
      "nvcr.io/nvidia/driver:550.54.15-ubuntu24.04",
      { registry: "nvcr.io", repository: "nvidia/driver", tag: "550.54.15-ubuntu24.04" },
    ],
    ["ubuntu", { registry: "docker.io", repository: "library/ubuntu" }],
    ["ubuntu:24.04", { registry: "docker.io", repository: "library/ubuntu", tag: "24.04" }],
    ["nvidia/cuda:12.1.0-base-ubuntu22.04", { registry: "docker.io", repository: "nvidia/cuda", tag: "12.1.0-base-ubuntu22.04" }],
    ["docker.io/ubuntu", { registry: "docker.io", repository: "library/ubuntu" }],
    ["index.docker.io/library/ubuntu", { registry: "docker.io", repository: "library/ubuntu" }],
    ["localhost/driver", { registry: "localhost", repository: "driver" }],
    ["localhost:5000/nvidia/driver:525", { registry: "localhost:5000", repository: "nvidia/driver", tag: "525" }],
    ["127.0.0.1:5000/driver", { registry: "127.0.0.1:5000", repository: "driver" }],
    ["[::1]:5000/driver", { registry: "[::1]:5000", repository: "driver" }],
    ["registry.example.com:443/a/b/c", { registry: "registry.example.com:443", repository: "a/b/c" }],
    ["ghcr.io/org/my_image__x--y.z:v1", { registry: "ghcr.io", repository: "org/my_image__x--y.z", tag: "v1" }],
    [`nvcr.io/nvidia/driver@${DIGEST}`, { registry: "nvcr.io", repository: "nvidia/driver", digest: DIGEST }],
    [
      `nvcr.io/nvidia/driver:580@${DIGEST}`,
      { registry: "nvcr.io", repository: "nvidia/driver", tag: "580", digest: DIGEST },
    ],
    ["foo:5000", { registry: "docker.io", repository: "library/foo", tag: "5000" }],
  ];
  for (const [ref, want] of cases) {
    it(`parses ${ref.slice(0, 60)}`, () => assert.deepEqual(parseImageRef(ref), want));
  }

  const bad: [string, RegExp][] = [
    ["", /image reference is empty/],
    ["nvcr.io/NVIDIA/driver", /repository "NVIDIA\/driver" must be lower case \("nvidia\/driver"\)/],
    ["Ubuntu", /repository "library\/Ubuntu" must be lower case/],
    ["nvcr.io/nvidia//driver", /invalid path component ""/],
    ["nvcr.io/nvidia/-driver", /invalid path component "-driver"/],
    ["nvcr.io/nvidia/driver.", /invalid path component "driver\."/],
    ["nvcr.io/nvidia/dri___ver", /invalid path component "dri___ver"/],
    ["nvcr.io/", /the repository name is missing/],
    ["nvcr.io/nvidia/driver:525+x", /tag "525\+x" is invalid/],
    ["nvcr.io/nvidia/driver:.525", /tag "\.525" is invalid/],
    ["nvcr.io/nvidia/driver:", /tag "" is invalid/],
    [`nvcr.io/nvidia/driver:${"a".repeat(129)}`, /is 129 characters long; at most 128/],
    ["nvcr.io/nvidia/driver@sha256:abc", /digest "sha256:abc" must be sha256: followed by 64 lower-case hex digits/],
    [`nvcr.io/nvidia/driver@${DIGEST.toUpperCase().replace("SHA256", "sha256")}`, /must be sha256: followed by 64/],
    [`nvcr.io/nvidia/driver@md5:${"0".repeat(32)}`, /digest "md5:0+" must start with sha256: or sha512:/],
    ["nvcr.io/nvidia/driver@", /digest "" must start with sha256:/],
    ["nv_cr.io/nvidia/driver", /registry "nv_cr\.io" is not a host name/],
    ["localhost:port/driver", /registry "localhost:port"/],
    [`r.io/${"a".repeat(251)}`, /longer than 255 characters/],
  ];
  for (const [ref, message] of bad) {
    it(`refuses ${JSON.stringify(ref.slice(0, 60))}`, () => {
      assert.throws(() => parseImageRef(ref), userError(message));
    });
  }

  it("round-trips: parse(format(x)) equals x", () => {
    fc.assert(
      fc.property(imageRefArb, (image) => {
        const text = formatImageRef(image);
        assert.deepEqual(parseImageRef(text), image);
        assert.deepEqual(parseImageRef(familiarImageRef(image)), image);
      }),
      { numRuns: 300 },
    );
  });
});

describe("formatImageRef and helpers", () => {
  it("writes the full and the familiar form", () => {
    const ubuntu = parseImageRef("ubuntu:24.04");
    assert.equal(formatImageRef(ubuntu), "docker.io/library/ubuntu:24.04");
    assert.equal(familiarImageRef(ubuntu), "ubuntu:24.04");
    assert.equal(familiarImageRef(parseImageRef("nvidia/cuda")), "nvidia/cuda");
    assert.equal(familiarImageRef(parseImageRef("nvcr.io/nvidia/driver:525")), "nvcr.io/nvidia/driver:525");
    assert.equal(familiarImageRef(parseImageRef("docker.io/my.org/img")), "docker.io/my.org/img");
    assert.equal(familiarImageRef(parseImageRef("docker.io/localhost/img")), "docker.io/localhost/img");
    assert.equal(repositoryRef("nvcr.io", "nvidia/driver"), "nvcr.io/nvidia/driver");
  });

  it("refuses to format a bad reference", () => {
    assert.throws(
      () => formatImageRef({ registry: "nvcr.io", repository: "nvidia/Driver" }),
      userError(/repository "nvidia\/Driver" must be lower case/),
    );
    assert.throws(
      () => formatImageRef({ registry: "nvcr.io", repository: "nvidia/driver", tag: "a b" }),
      userError(/tag "a b" is invalid/),
    );
  });

  it("builds the driver image the way a ClusterPolicy names it", () => {
    assert.deepEqual(driverImageRef("nvcr.io/nvidia", "driver", "525-5.15.0-69-generic-ubuntu22.04"), {
      registry: "nvcr.io",
      repository: "nvidia/driver",
      tag: "525-5.15.0-69-generic-ubuntu22.04",
    });
    assert.deepEqual(driverImageRef("nvcr.io/nvidia/", "driver", DIGEST), {
      registry: "nvcr.io",
      repository: "nvidia/driver",
      digest: DIGEST,
    });
    assert.deepEqual(driverImageRef("localhost:5000", "driver", "580"), {
      registry: "localhost:5000",
      repository: "driver",
      tag: "580",
    });
  });
});
