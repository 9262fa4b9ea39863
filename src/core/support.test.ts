import { describe, it } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { UserError } from "./errors.ts";
import { kernelArb, osTagArb } from "./arbitraries.test.ts";
import { parsePrecompiledTag } from "./tag.ts";
import {
  NVIDIA_DRIVER_REPOSITORY,
  PRECOMPILED_SUPPORT,
  checkPrecompiledSupport,
  isNvidiaRepository,
  normalizeArch,
  precompiledIncompatibilities,
  type SupportQuery,
} from "./support.ts";

const userError = (message: RegExp) => (err: unknown) => err instanceof UserError && message.test(err.message);
const nvidia = (q: Partial<SupportQuery>): SupportQuery => ({
  repository: NVIDIA_DRIVER_REPOSITORY,
  branch: "580",
  kernel: "5.15.0-69-generic",
  osTag: "ubuntu22.04",
  arch: "amd64",
  ...q,
});
const SUPPORTED = { supported: true, reasons: [] };

describe("checkPrecompiledSupport", () => {
  it("supports the seed's combination", () => {
    assert.deepEqual(checkPrecompiledSupport(nvidia({ branch: "525" })), SUPPORTED);
  });

  // Tags NVIDIA publishes (reference: driver-images-and-peers.md): each must be supported.
  const published = [
    "525-5.15.0-69-generic-ubuntu22.04",
    "535-5.15.0-118-generic-ubuntu22.04",
    "580-6.8.0-1047-oracle-ubuntu24.04",
    "580-6.8.0-1046-azure-fde-ubuntu24.04",
    "580-5.15.0-1103-aws-ubuntu22.04",
    "535-6.8.0-1050-aws-ubuntu22.04",
  ];
  for (const tag of published) {
    it(`supports published ${tag}`, () => {
      const t = parsePrecompiledTag(tag);
      assert.deepEqual(checkPrecompiledSupport(nvidia({ branch: t.branch, kernel: t.kernel, osTag: t.osTag })), SUPPORTED);
    });
  }

  it("supports arm64 builds, the 64k page-size kernels included", () => {
    assert.deepEqual(
      checkPrecompiledSupport(nvidia({ kernel: "6.8.0-1049-nvidia-64k", osTag: "ubuntu24.04", arch: "arm64" })),
      SUPPORTED,
    );
    assert.deepEqual(checkPrecompiledSupport(nvidia({ arch: "aarch64" })), SUPPORTED);
  });

  it("explains an unpublished flavor and what to do", () => {
    const r = checkPrecompiledSupport(nvidia({ kernel: "5.15.0-69-lowlatency" }));
    assert.equal(r.supported, false);
    assert.deepEqual(r.reasons, [
      "NVIDIA publishes no precompiled images for kernel flavor 'lowlatency' (only generic, aws, azure, azure-fde, nvidia, oracle); " +
        "build one with `gpuop precompiled build` and set driver.repository, or use conventional drivers (driver.usePrecompiled=false)",
    ]);
  });

  it("names each unsupported part", () => {
    const r = checkPrecompiledSupport(
      nvidia({ branch: "470", kernel: "5.14.0-687.39.1.el9_8.x86_64", osTag: "rhel9", arch: "ppc64le" }),
    );
    assert.equal(r.supported, false);
    assert.equal(r.reasons.length, 4);
    assert.match(r.reasons[0] ?? "", /no precompiled images for OS 'rhel9' \(only ubuntu22\.04, ubuntu24\.04\); build one/);
    assert.match(r.reasons[1] ?? "", /architecture 'ppc64le' \(only amd64, arm64\)/);
    assert.match(r.reasons[2] ?? "", /kernel flavor 'el9_8'/);
    assert.match(r.reasons[3] ?? "", /driver branch 470 \(only 525, 535, 550, 570, 580\); set driver\.version to one of those/);
  });

  it("explains a branch not published for this OS and architecture", () => {
    const r = checkPrecompiledSupport(nvidia({ branch: "525", osTag: "ubuntu24.04", kernel: "6.8.0-1047-oracle" }));
    assert.deepEqual(r.supported, false);
    assert.match(
      r.reasons[0] ?? "",
      /for ubuntu24\.04, amd64 and kernel flavor 'oracle' only for driver branches 550, 570, 580, not 525; set driver\.version/,
    );
    const arm = checkPrecompiledSupport(nvidia({ branch: "525", arch: "arm64" }));
    assert.match(arm.reasons[0] ?? "", /for ubuntu22\.04, arm64 and kernel flavor 'generic' only for driver branches 535, 550, 570, 580, not 525/);
  });

  it("explains a combination no row has", () => {
    const table = [
      { osTags: ["ubuntu22.04"], arches: ["amd64"], flavors: ["generic"], branches: ["525"], source: "test" },
      { osTags: ["ubuntu24.04"], arches: ["arm64"], flavors: ["aws"], branches: ["525"], source: "test" },
    ];
    const r = checkPrecompiledSupport(nvidia({ branch: "525", arch: "arm64" }), table);
    assert.deepEqual(r, {
      supported: false,
      reasons: [
        "NVIDIA publishes no precompiled images for ubuntu22.04, arm64 and kernel flavor 'generic'; " +
          "build one with `gpuop precompiled build` and set driver.repository, or use conventional drivers (driver.usePrecompiled=false)",
      ],
    });
  });

  it("reports a kernel without flavor", () => {
    const r = checkPrecompiledSupport(nvidia({ kernel: "6.6.1" }));
    assert.match(r.reasons[0] ?? "", /kernel 6\.6\.1 \(no flavor\)/);
  });

  it("accepts any combination in a custom repository", () => {
    fc.assert(
      fc.property(kernelArb, osTagArb, fc.constantFrom("amd64", "arm64", "s390x"), (k, osTag, arch) => {
        const q = { repository: "registry.example.com/gpu", branch: "525", kernel: k.release, osTag, arch };
        assert.deepEqual(checkPrecompiledSupport(q), SUPPORTED);
      }),
    );
  });

  it("agrees with the table row by row", () => {
    for (const row of PRECOMPILED_SUPPORT) {
      for (const osTag of row.osTags) for (const arch of row.arches) for (const flavor of row.flavors) for (const branch of row.branches) {
        const q = nvidia({ branch, osTag, arch, kernel: `6.8.0-1000-${flavor}` });
        assert.deepEqual(checkPrecompiledSupport(q), SUPPORTED, JSON.stringify(q));
      }
    }
  });

  it("refuses malformed input even for a custom repository", () => {
    const custom = { repository: "localhost:5000" };
    assert.throws(
      () => checkPrecompiledSupport(nvidia({ ...custom, branch: "525.105.17" })),
      userError(/"525\.105\.17" is a full driver version; precompiled images are tagged by branch: use 525/),
    );
    assert.throws(() => checkPrecompiledSupport(nvidia({ ...custom, kernel: "5.15-69" })), userError(/kernel release "5\.15-69"/));
    assert.throws(() => checkPrecompiledSupport(nvidia({ ...custom, osTag: "jammy" })), userError(/OS tag "jammy"/));
    assert.throws(() => checkPrecompiledSupport(nvidia({ ...custom, arch: " " })), userError(/architecture is empty/));
  });
});

describe("repository and architecture helpers", () => {
  it("recognises NVIDIA's repository", () => {
    for (const r of ["", "nvcr.io/nvidia", "nvcr.io/nvidia/", "NVCR.IO/nvidia", "nvcr.io/nvidia/driver"]) assert.ok(isNvidiaRepository(r), r);
    for (const r of ["nvcr.io/nvidia/cloud-native", "nvcr.io/myorg", "registry.example.com/nvidia"]) assert.ok(!isNvidiaRepository(r), r);
  });
  it("normalizes architectures", () => {
    assert.equal(normalizeArch("x86_64"), "amd64");
    assert.equal(normalizeArch("aarch64"), "arm64");
    assert.equal(normalizeArch("ARM64"), "arm64");
    assert.equal(normalizeArch("ppc64le"), "ppc64le");
  });
});

describe("precompiledIncompatibilities", () => {
  it("lists the enabled features precompiled drivers cannot serve", () => {
    assert.deepEqual(precompiledIncompatibilities({}), []);
    assert.deepEqual(precompiledIncompatibilities({ vgpu: false, gds: true, gdrcopy: true }), [
      "GPUDirect Storage (GDS) does not work with precompiled driver containers: turn it off or set driver.usePrecompiled=false",
      "GDRCopy does not work with precompiled driver containers: turn it off or set driver.usePrecompiled=false",
    ]);
    assert.match(precompiledIncompatibilities({ vgpu: true })[0] ?? "", /^NVIDIA vGPU does not work/);
  });
});
