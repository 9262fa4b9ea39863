/**
 * fast-check generators of valid domain values, shared by the core property tests.
 * (Named *.test.ts so the build leaves it out; it holds no tests of its own.)
 */
import fc from "fast-check";
import { formatKernel, type Kernel } from "./kernel.ts";

/** Valid kernels in all three shapes parseKernel accepts. */
export const kernelArb: fc.Arbitrary<Kernel> = (() => {
  const num = fc.integer({ min: 0, max: 2000 });
  const abi = fc.array(fc.integer({ min: 0, max: 200000 }), { minLength: 1, maxLength: 3 }).map((p) => p.join("."));
  const word = fc.stringMatching(/^[a-z0-9]{1,8}$/);
  const letterWord = fc.stringMatching(/^[a-z][a-z0-9]{0,7}$/);
  const version = fc.record({ major: num, minor: num, patch: num });
  const deb = fc
    .record({ v: version, abi, flavor: fc.option(fc.array(word, { minLength: 1, maxLength: 3 }), { nil: undefined }) })
    .map(({ v, abi, flavor }) => ({ ...v, abi, flavor: flavor?.join("-") ?? "" }));
  const rpm = fc
    .record({
      v: version,
      abi,
      flavor: fc.stringMatching(/^[a-z][a-z0-9_]{0,8}$/),
      arch: fc.option(fc.constantFrom("x86_64", "aarch64", "ppc64le", "s390x"), { nil: undefined }),
      variant: fc.option(fc.stringMatching(/^[a-z0-9_]{1,6}$/), { nil: undefined }),
    })
    .map(({ v, abi, flavor, arch, variant }) => {
      const k: Omit<Kernel, "release"> = { ...v, abi, flavor, style: "rpm" };
      if (arch !== undefined) k.arch = arch;
      if (variant !== undefined) k.variant = variant;
      return k;
    });
  const local = fc
    .record({ v: version, flavor: fc.option(fc.tuple(letterWord, fc.array(word, { maxLength: 2 })), { nil: undefined }) })
    .map(({ v, flavor }) => ({ ...v, abi: "", flavor: flavor ? [flavor[0], ...flavor[1]].join("-") : "" }));
  return fc
    .oneof(deb, rpm, local)
    .map((k) => ({ ...k, release: formatKernel({ ...k, release: "" }) }))
    .filter((k) => k.release.length <= 64);
})();


/** OS tags of the shape NFD labels produce: `ubuntu22.04`, `rhel9`. */
export const osTagArb: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom("ubuntu22.04", "ubuntu24.04", "rhel9", "rocky8", "ol9", "sles15.5"),
  fc
    .tuple(fc.stringMatching(/^[a-z]{1,10}$/), fc.array(fc.integer({ min: 0, max: 99999 }), { minLength: 1, maxLength: 3 }))
    .map(([id, parts]) => id + parts.join(".")),
);

/** Driver branches: `525`, `1024`. */
export const branchArb: fc.Arbitrary<string> = fc.integer({ min: 100, max: 9999 }).map(String);

/** Full driver versions: `550.54.15`, `410.79`. */
export const fullVersionArb: fc.Arbitrary<string> = fc
  .tuple(branchArb, fc.array(fc.integer({ min: 0, max: 999 }), { minLength: 1, maxLength: 2 }))
  .map(([b, parts]) => [b, ...parts].join("."));

/** Kernels that fit in an image tag (no `+variant`). */
export const tagKernelArb: fc.Arbitrary<Kernel> = kernelArb.filter((k) => !k.release.includes("+"));

const pathComponentArb = fc
  .tuple(
    fc.stringMatching(/^[a-z0-9]{1,6}$/),
    fc.array(fc.tuple(fc.constantFrom(".", "_", "__", "-", "--"), fc.stringMatching(/^[a-z0-9]{1,6}$/)), { maxLength: 2 }),
  )
  .map(([head, tail]) => head + tail.map(([sep, part]) => sep + part).join(""));

/** Normalized image references, as parseImageRef returns them. */
export const imageRefArb = fc
  .record({
    registry: fc.oneof(
      fc.constantFrom("docker.io", "nvcr.io", "ghcr.io", "localhost", "localhost:5000", "127.0.0.1:5000", "[::1]:5000"),
      fc
        .tuple(fc.array(fc.stringMatching(/^[a-z0-9]([a-z0-9-]{0,6}[a-z0-9])?$/), { minLength: 2, maxLength: 3 }), fc.option(fc.integer({ min: 1, max: 65535 })))
        .map(([labels, port]) => labels.join(".") + (port === null ? "" : `:${port}`)),
    ),
    components: fc.array(pathComponentArb, { minLength: 1, maxLength: 4 }),
    tag: fc.option(fc.stringMatching(/^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/), { nil: undefined }),
    digest: fc.option(
      fc.oneof(
        fc.stringMatching(/^[a-f0-9]{64}$/).map((h) => `sha256:${h}`),
        fc.stringMatching(/^[a-f0-9]{128}$/).map((h) => `sha512:${h}`),
      ),
      { nil: undefined },
    ),
  })
  .filter((r) => !(r.registry === "docker.io" && r.components.length === 1))
  .map(({ registry, components, tag, digest }) => ({
    registry,
    repository: components.join("/"),
    ...(tag === undefined ? {} : { tag }),
    ...(digest === undefined ? {} : { digest }),
  }));
