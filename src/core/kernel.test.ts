import { describe, it } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { kernelArb } from "./arbitraries.test.ts";
import { UserError } from "./errors.ts";
import {
  compareKernelReleases,
  compareKernels,
  formatKernel,
  isKernelRelease,
  kernelBaseFlavor,
  parseKernel,
  type Kernel,
} from "./kernel.ts";

describe("parseKernel", () => {
  const cases: [string, Partial<Kernel>][] = [
    ["5.15.0-69-generic", { major: 5, minor: 15, patch: 0, abi: "69", flavor: "generic" }],
    ["5.15.0-70-generic", { abi: "70", flavor: "generic" }],
    ["5.15.0-118-generic", { abi: "118", flavor: "generic" }],
    ["5.15.0-1033-aws", { abi: "1033", flavor: "aws" }],
    ["5.15.0-1103-aws", { abi: "1103", flavor: "aws" }],
    ["6.8.0-1050-aws", { major: 6, minor: 8, patch: 0, abi: "1050", flavor: "aws" }],
    ["6.8.0-1046-azure-fde", { abi: "1046", flavor: "azure-fde" }],
    ["6.8.0-1047-oracle", { abi: "1047", flavor: "oracle" }],
    ["6.8.0-1049-nvidia-64k", { abi: "1049", flavor: "nvidia-64k" }],
    ["5.14.21-150500.55.19-default", { patch: 21, abi: "150500.55.19", flavor: "default" }],
    ["6.1.0-18-cloud-amd64", { abi: "18", flavor: "cloud-amd64" }],
    [
      "5.14.0-687.39.1.el9_8.x86_64",
      { major: 5, minor: 14, patch: 0, abi: "687.39.1", flavor: "el9_8", arch: "x86_64", style: "rpm" },
    ],
    ["5.14.0-427.13.1.el9_4.aarch64+64k", { abi: "427.13.1", flavor: "el9_4", arch: "aarch64", variant: "64k" }],
    ["5.15.0-200.131.27.el9uek.x86_64", { abi: "200.131.27", flavor: "el9uek", arch: "x86_64" }],
    ["6.1.55-75.123.amzn2023.x86_64", { abi: "75.123", flavor: "amzn2023", arch: "x86_64" }],
    ["4.18.0-553.el8_10", { abi: "553", flavor: "el8_10", style: "rpm" }],
    ["6.6.1", { abi: "", flavor: "" }],
    ["6.6.1-arch1-1", { abi: "", flavor: "arch1-1" }],
  ];
  for (const [release, want] of cases) {
    it(`parses ${release}`, () => {
      const k = parseKernel(release);
      assert.equal(k.release, release);
      for (const [key, value] of Object.entries(want)) assert.deepEqual(k[key as keyof Kernel], value, key);
      assert.equal(formatKernel(k), release);
    });
  }

  it("leaves arch and variant unset for Debian kernels", () => {
    const k = parseKernel("5.15.0-69-generic");
    assert.deepEqual(k, { release: "5.15.0-69-generic", major: 5, minor: 15, patch: 0, abi: "69", flavor: "generic" });
  });

  const bad: [string, RegExp][] = [
    ["", /kernel release is empty/],
    ["generic", /version "generic" is not MAJOR\.MINOR\.PATCH/],
    ["5.15-69-generic", /version "5\.15" is not MAJOR\.MINOR\.PATCH/],
    ["05.15.0-69-generic", /version "05\.15\.0"/],
    ["5.15.0-69-Generic", /suffix "69-Generic"/],
    ["5.15.0-69_generic", /suffix "69_generic"/],
    ["5.15.0-", /suffix ""/],
    ["5.15.0-69--generic", /suffix "69--generic"/],
    ["5.14.0-687.39.1.el9_8.x86_64+", /suffix "687\.39\.1\.el9_8\.x86_64\+"/],
    ["5.15.0-69-generic " , /suffix "69-generic "/],
    [`5.15.0-69-${"x".repeat(60)}`, /is 70 characters long; `uname -r` is at most 64/],
  ];
  for (const [release, message] of bad) {
    it(`refuses ${JSON.stringify(release)}`, () => {
      assert.throws(() => parseKernel(release), (err) => err instanceof UserError && message.test(err.message));
      assert.equal(isKernelRelease(release), false);
    });
  }

  it("round-trips: parse(format(k)) equals k and format(parse(s)) equals s", () => {
    fc.assert(
      fc.property(kernelArb, (k) => {
        assert.deepEqual(parseKernel(formatKernel(k)), k);
        assert.equal(formatKernel(parseKernel(k.release)), k.release);
      }),
    );
  });
});

describe("compareKernels", () => {
  it("orders by version, then ABI numerically", () => {
    const releases = [
      "6.8.0-1046-azure-fde",
      "5.15.0-118-generic",
      "5.15.0-69-generic",
      "5.15.0-1103-aws",
      "5.15.0-70-generic",
      "5.14.0-687.39.1.el9_8.x86_64",
      "5.14.0-687.4.2.el9_8.x86_64",
      "5.14.0-687.el9_8.x86_64",
      "6.10.0-1-generic",
    ];
    assert.deepEqual(releases.toSorted(compareKernelReleases), [
      "5.14.0-687.el9_8.x86_64",
      "5.14.0-687.4.2.el9_8.x86_64",
      "5.14.0-687.39.1.el9_8.x86_64",
      "5.15.0-69-generic",
      "5.15.0-70-generic",
      "5.15.0-118-generic",
      "5.15.0-1103-aws",
      "6.8.0-1046-azure-fde",
      "6.10.0-1-generic",
    ]);
  });

  it("is a total order consistent with equality of releases", () => {
    fc.assert(
      fc.property(kernelArb, kernelArb, kernelArb, (a, b, c) => {
        assert.equal(compareKernels(a, a), 0);
        assert.equal(Math.sign(compareKernels(a, b)), -Math.sign(compareKernels(b, a)));
        assert.equal(compareKernels(a, b) === 0, a.release === b.release);
        if (compareKernels(a, b) <= 0 && compareKernels(b, c) <= 0) assert.ok(compareKernels(a, c) <= 0);
      }),
    );
  });

  it("puts a higher version after a higher ABI of a lower version", () => {
    fc.assert(
      fc.property(kernelArb, kernelArb, (a, b) => {
        if (a.major < b.major) assert.ok(compareKernels(a, b) < 0);
      }),
    );
  });
});

describe("kernelBaseFlavor", () => {
  it("drops the 64k page-size variant only", () => {
    assert.equal(kernelBaseFlavor(parseKernel("6.8.0-1049-nvidia-64k")), "nvidia");
    assert.equal(kernelBaseFlavor(parseKernel("6.8.0-45-generic-64k")), "generic");
    assert.equal(kernelBaseFlavor(parseKernel("6.8.0-1046-azure-fde")), "azure-fde");
    assert.equal(kernelBaseFlavor(parseKernel("5.15.0-69-generic")), "generic");
    assert.equal(kernelBaseFlavor(parseKernel("5.14.0-687.39.1.el9_8.x86_64")), "el9_8");
  });
});
