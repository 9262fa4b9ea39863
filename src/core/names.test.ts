import { describe, it } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { UserError } from "./errors.ts";
import { kernelArb, osTagArb } from "./arbitraries.test.ts";
import {
  conventionalDaemonSetName,
  driverDaemonSetName,
  isDnsLabel,
  isDnsSubdomain,
  isLabelValue,
  precompiledDaemonSetName,
  sanitizeKernelForName,
  shortHash,
} from "./names.ts";

const userError = (message: RegExp) => (err: unknown) => err instanceof UserError && message.test(err.message);

/** What every derived name must be: a DaemonSet name (subdomain) that also fits a label value. */
function assertValidName(name: string): void {
  assert.ok(name.length <= 63, `${name} is ${name.length} characters`);
  assert.ok(isDnsSubdomain(name), `${name} is not a DNS subdomain`);
  assert.ok(isLabelValue(name), `${name} is not a label value`);
  assert.ok(name.startsWith("nvidia-driver-daemonset-"), name);
}

describe("DNS-1123 helpers", () => {
  it("isDnsLabel", () => {
    for (const ok of ["a", "abc-123", "0", "a".repeat(63), "a--b"]) assert.ok(isDnsLabel(ok), ok);
    for (const bad of ["", "-a", "a-", "A", "a.b", "a_b", "a".repeat(64)]) assert.ok(!isDnsLabel(bad), bad);
  });
  it("isDnsSubdomain", () => {
    for (const ok of ["a", "a.b", "nvidia-driver-daemonset-5.15.0-69-generic-ubuntu22.04", "a".repeat(253)]) {
      assert.ok(isDnsSubdomain(ok), ok);
    }
    for (const bad of ["", "a..b", ".a", "a.", "a.-b", "A.b", "a".repeat(254)]) assert.ok(!isDnsSubdomain(bad), bad);
  });
  it("isLabelValue", () => {
    for (const ok of ["", "a", "A_b.c-d", "a".repeat(63)]) assert.ok(isLabelValue(ok), ok);
    for (const bad of ["-a", "a_", "a b", "a".repeat(64)]) assert.ok(!isLabelValue(bad), bad);
  });
  it("shortHash is stable", () => {
    assert.equal(shortHash(""), "e3b0c44298");
    assert.equal(shortHash("abc", 8), "ba7816bf");
  });
});

describe("sanitizeKernelForName", () => {
  it("matches NVIDIA's form", () => {
    assert.equal(sanitizeKernelForName("5.15.0-69-generic"), "5.15.0-69-generic");
    assert.equal(sanitizeKernelForName("6.8.0-1049-nvidia-64k"), "6.8.0-1049-nvidia-64k");
    assert.equal(sanitizeKernelForName("5.14.0-687.39.1.el9_8.x86_64"), "5.14.0-687.39.1.el9.8");
    assert.equal(sanitizeKernelForName("5.14.0-687.39.1.el9_8.aarch64"), "5.14.0-687.39.1.el9.8");
    assert.equal(sanitizeKernelForName("5.14.0-427.13.1.el9_4.aarch64+64k"), "5.14.0-427.13.1.el9.4-64k");
    assert.equal(sanitizeKernelForName("6.6.1-Custom_Build"), "6.6.1-custom.build");
    assert.equal(sanitizeKernelForName("-a_.-b+"), "a.b");
  });
});

describe("driver DaemonSet names", () => {
  it("keeps NVIDIA's names where they are exact", () => {
    assert.equal(
      precompiledDaemonSetName("5.15.0-69-generic", "ubuntu22.04"),
      "nvidia-driver-daemonset-5.15.0-69-generic-ubuntu22.04",
    );
    assert.equal(
      precompiledDaemonSetName("6.8.0-1046-azure-fde", "ubuntu24.04"),
      "nvidia-driver-daemonset-6.8.0-1046-azure-fde-ubuntu24.04",
    );
    assert.equal(
      precompiledDaemonSetName("6.8.0-1049-nvidia-64k", "ubuntu24.04"),
      "nvidia-driver-daemonset-6.8.0-1049-nvidia-64k-ubuntu24.04",
    );
    assert.equal(conventionalDaemonSetName("ubuntu22.04"), "nvidia-driver-daemonset-ubuntu22.04");
    assert.equal(driverDaemonSetName("rhel9"), "nvidia-driver-daemonset-rhel9");
    assert.equal(driverDaemonSetName("ubuntu22.04", "5.15.0-69-generic"), "nvidia-driver-daemonset-5.15.0-69-generic-ubuntu22.04");
  });

  it("adds a hash where sanitizing loses the architecture", () => {
    const amd = precompiledDaemonSetName("5.14.0-687.39.1.el9_8.x86_64", "rhel9");
    const arm = precompiledDaemonSetName("5.14.0-687.39.1.el9_8.aarch64", "rhel9");
    assert.match(amd, /^nvidia-driver-daemonset-5\.14\.0-687\.39\.1\.el9\.8-rhel9--[0-9a-f]{10}$/);
    assert.match(arm, /^nvidia-driver-daemonset-5\.14\.0-687\.39\.1\.el9\.8-rhel9--[0-9a-f]{10}$/);
    assert.notEqual(amd, arm);
    assertValidName(amd);
  });

  it("shortens long names with a hash, keeping the OS tag", () => {
    const name = precompiledDaemonSetName("6.8.0-1049-nvidia-64k-with-a-very-long-local-version", "ubuntu24.04");
    assertValidName(name);
    assert.match(name, /^nvidia-driver-daemonset-6\.8\.0-1049-nvid-ubuntu24\.04--[0-9a-f]{10}$/);
    const longOs = conventionalDaemonSetName("ubuntu22.04.1.2.3.4.5.6.7.8.9.10.11.12.13.14");
    assertValidName(longOs);
    assert.match(longOs, /--[0-9a-f]{10}$/);
  });

  it("refuses inputs no name can come from", () => {
    assert.throws(() => precompiledDaemonSetName("", "ubuntu22.04"), userError(/kernel is empty/));
    assert.throws(() => precompiledDaemonSetName("5.15.0-69-generic", "Ubuntu 22.04"), userError(/OS tag "Ubuntu 22\.04"/));
    assert.throws(() => conventionalDaemonSetName(""), userError(/OS tag ""/));
  });

  it("derives valid, deterministic names, distinct for distinct real kernels and OS tags", () => {
    fc.assert(
      fc.property(kernelArb, osTagArb, kernelArb, osTagArb, (k1, os1, k2, os2) => {
        const a = precompiledDaemonSetName(k1.release, os1);
        const b = precompiledDaemonSetName(k2.release, os2);
        assertValidName(a);
        assert.equal(precompiledDaemonSetName(k1.release, os1), a);
        assert.equal(a === b, k1.release === k2.release && os1 === os2);
        assert.notEqual(a, conventionalDaemonSetName(os2));
      }),
      { numRuns: 500 },
    );
  });

  it("stays valid and distinct for arbitrary kernel strings", () => {
    const anyKernel = fc.string({ minLength: 1, maxLength: 80, unit: fc.constantFrom(..."05aZ._-+/ ~é") });
    fc.assert(
      fc.property(anyKernel, osTagArb, anyKernel, osTagArb, (k1, os1, k2, os2) => {
        const a = precompiledDaemonSetName(k1, os1);
        assertValidName(a);
        assert.equal(a === precompiledDaemonSetName(k2, os2), k1 === k2 && os1 === os2);
      }),
      { numRuns: 500 },
    );
  });

  it("conventional names are valid and distinct per OS tag", () => {
    fc.assert(
      fc.property(osTagArb, osTagArb, (a, b) => {
        assertValidName(conventionalDaemonSetName(a));
        assert.equal(conventionalDaemonSetName(a) === conventionalDaemonSetName(b), a === b);
      }),
    );
  });
});
