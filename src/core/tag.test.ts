import { describe, it } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { UserError } from "./errors.ts";
import { branchArb, fullVersionArb, osTagArb, tagKernelArb } from "./arbitraries.test.ts";
import {
  checkDriverBranch,
  driverBranchOf,
  formatConventionalTag,
  formatPrecompiledTag,
  isConventionalTag,
  isDriverBranch,
  isFullDriverVersion,
  isPrecompiledTag,
  parseConventionalTag,
  parsePrecompiledTag,
  type PrecompiledTag,
} from "./tag.ts";

const userError = (message: RegExp) => (err: unknown) => err instanceof UserError && message.test(err.message);

describe("precompiled tags", () => {
  // Tags published by NVIDIA (reference: driver-images-and-peers.md, seed doc).
  const real: [string, PrecompiledTag][] = [
    ["525-5.15.0-69-generic-ubuntu22.04", { branch: "525", kernel: "5.15.0-69-generic", osTag: "ubuntu22.04" }],
    ["525-5.15.0-70-generic-ubuntu22.04", { branch: "525", kernel: "5.15.0-70-generic", osTag: "ubuntu22.04" }],
    ["535-5.15.0-118-generic-ubuntu22.04", { branch: "535", kernel: "5.15.0-118-generic", osTag: "ubuntu22.04" }],
    ["580-6.8.0-1047-oracle-ubuntu24.04", { branch: "580", kernel: "6.8.0-1047-oracle", osTag: "ubuntu24.04" }],
    ["580-6.8.0-1046-azure-fde-ubuntu24.04", { branch: "580", kernel: "6.8.0-1046-azure-fde", osTag: "ubuntu24.04" }],
    ["580-5.15.0-1103-aws-ubuntu22.04", { branch: "580", kernel: "5.15.0-1103-aws", osTag: "ubuntu22.04" }],
    ["535-6.8.0-1050-aws-ubuntu22.04", { branch: "535", kernel: "6.8.0-1050-aws", osTag: "ubuntu22.04" }],
    ["525-5.15.0-1033-aws-ubuntu22.04", { branch: "525", kernel: "5.15.0-1033-aws", osTag: "ubuntu22.04" }],
    ["580-6.8.0-1049-nvidia-64k-ubuntu24.04", { branch: "580", kernel: "6.8.0-1049-nvidia-64k", osTag: "ubuntu24.04" }],
    [
      "570-5.14.0-687.39.1.el9_8.x86_64-rhel9",
      { branch: "570", kernel: "5.14.0-687.39.1.el9_8.x86_64", osTag: "rhel9" },
    ],
  ];
  for (const [tag, want] of real) {
    it(`parses ${tag}`, () => {
      assert.deepEqual(parsePrecompiledTag(tag), want);
      assert.equal(formatPrecompiledTag(want), tag);
      assert.equal(isPrecompiledTag(tag), true);
      assert.equal(isConventionalTag(tag), false);
    });
  }

  const bad: [string, RegExp][] = [
    ["latest", /"latest" is not a precompiled driver tag <branch>-<kernel>-<os-tag>/],
    ["525-ubuntu22.04", /is not a precompiled driver tag/],
    ["525.105.17-5.15.0-69-generic-ubuntu22.04", /"525\.105\.17" is not a driver branch like 525 \(precompiled tags use the branch, 525\)/],
    ["r525-5.15.0-69-generic-ubuntu22.04", /"r525" is not a driver branch/],
    ["525-5.15.0-69-generic-ubuntu", /OS tag "ubuntu" is not like ubuntu22\.04/],
    ["525-5.15.0-69-generic-jammy", /OS tag "jammy"/],
    ["525-5.15-69-generic-ubuntu22.04", /tag "525-5\.15-69-generic-ubuntu22\.04": kernel release "5\.15-69-generic": version "5\.15"/],
    ["525-5.15.0-69-Generic-ubuntu22.04", /kernel release "5\.15\.0-69-Generic": suffix "69-Generic"/],
    ["525-5.15.0-69-generic+x-ubuntu22.04", /contains "\+"; tags allow only letters, digits/],
    [".525-5.15.0-69-generic-ubuntu22.04", /must start with a letter, digit or underscore/],
    [`525-5.15.0-69-${"g".repeat(120)}-ubuntu22.04`, /is 146 characters long; registries allow at most 128/],
  ];
  for (const [tag, message] of bad) {
    it(`refuses ${tag.slice(0, 50)}`, () => {
      assert.throws(() => parsePrecompiledTag(tag), userError(message));
      assert.equal(isPrecompiledTag(tag), false);
    });
  }

  it("refuses to format a full version as the branch", () => {
    assert.throws(
      () => formatPrecompiledTag({ branch: "525.105.17", kernel: "5.15.0-69-generic", osTag: "ubuntu22.04" }),
      userError(/"525\.105\.17" is a full driver version; precompiled images are tagged by branch: use 525/),
    );
  });

  it("refuses to format a kernel with a variant (tags have no '+')", () => {
    assert.throws(
      () => formatPrecompiledTag({ branch: "550", kernel: "5.14.0-427.13.1.el9_4.aarch64+64k", osTag: "rhel9" }),
      userError(/contains "\+"/),
    );
  });

  it("round-trips: parse(format(t)) equals t", () => {
    const tagArb = fc
      .record({ branch: branchArb, kernel: tagKernelArb.map((k) => k.release), osTag: osTagArb })
      .filter((t) => t.branch.length + t.kernel.length + t.osTag.length + 2 <= 128);
    fc.assert(
      fc.property(tagArb, (t) => {
        assert.deepEqual(parsePrecompiledTag(formatPrecompiledTag(t)), { ...t });
      }),
      { numRuns: 300 },
    );
  });
});

describe("conventional tags", () => {
  it("parses real tags", () => {
    assert.deepEqual(parseConventionalTag("550.54.15-ubuntu24.04"), { version: "550.54.15", osTag: "ubuntu24.04" });
    assert.deepEqual(parseConventionalTag("525.105.17-ubuntu22.04"), { version: "525.105.17", osTag: "ubuntu22.04" });
    assert.deepEqual(parseConventionalTag("535.104.05-rhel9"), { version: "535.104.05", osTag: "rhel9" });
    assert.equal(formatConventionalTag({ version: "550.54.15", osTag: "ubuntu24.04" }), "550.54.15-ubuntu24.04");
    assert.equal(isConventionalTag("550.54.15-ubuntu24.04"), true);
    assert.equal(isPrecompiledTag("550.54.15-ubuntu24.04"), false);
  });

  const bad: [string, RegExp][] = [
    ["550.54.15", /not a conventional driver tag <version>-<os-tag>/],
    ["525-5.15.0-69-generic-ubuntu22.04", /not a conventional driver tag/],
    ["550-ubuntu24.04", /"550" is not a full driver version/],
    ["550.54.15-noble", /OS tag "noble"/],
    ["550.54.15-ubuntu24.04 ", /contains " "/],
  ];
  for (const [tag, message] of bad) {
    it(`refuses ${JSON.stringify(tag)}`, () => assert.throws(() => parseConventionalTag(tag), userError(message)));
  }

  it("refuses to format a branch as the version", () => {
    assert.throws(
      () => formatConventionalTag({ version: "550", osTag: "ubuntu24.04" }),
      userError(/driver version "550" is a branch; conventional images need a full version/),
    );
    assert.throws(
      () => formatConventionalTag({ version: "v550", osTag: "ubuntu24.04" }),
      userError(/"v550" is not a full driver version/),
    );
  });

  it("round-trips", () => {
    fc.assert(
      fc.property(fc.record({ version: fullVersionArb, osTag: osTagArb }), (t) => {
        assert.deepEqual(parseConventionalTag(formatConventionalTag(t)), { ...t });
      }),
    );
  });
});

describe("driver versions", () => {
  it("tells branches from full versions", () => {
    for (const b of ["525", "535", "550", "570", "580"]) assert.ok(isDriverBranch(b) && !isFullDriverVersion(b), b);
    for (const v of ["525.105.17", "550.54.15", "535.104.05", "410.79"]) {
      assert.ok(isFullDriverVersion(v) && !isDriverBranch(v), v);
    }
    for (const x of ["", "52", "0525", "525.", "latest", "525-server", "sha256:abc"]) {
      assert.ok(!isDriverBranch(x) && !isFullDriverVersion(x), x);
    }
  });

  it("finds the branch of a version", () => {
    assert.equal(driverBranchOf("525.105.17"), "525");
    assert.equal(driverBranchOf("580"), "580");
    assert.throws(() => driverBranchOf("latest"), userError(/"latest" is not a full driver version/));
    fc.assert(fc.property(fullVersionArb, (v) => isDriverBranch(driverBranchOf(v)) && v.startsWith(driverBranchOf(v) + ".")));
  });

  it("checkDriverBranch explains a full version", () => {
    assert.doesNotThrow(() => checkDriverBranch("525"));
    assert.throws(() => checkDriverBranch("550.54.15"), userError(/use 550$/));
    assert.throws(() => checkDriverBranch("latest"), userError(/"latest" is not a driver branch like 525, 535 or 580/));
  });
});

describe("what formatting and parsing check", () => {
  it("formatPrecompiledTag checks the kernel and the OS tag, not only the text", () => {
    assert.throws(() => formatPrecompiledTag({ branch: "550", kernel: "generic", osTag: "ubuntu22.04" }), userError(/^tag "550-generic-ubuntu22\.04": .*generic/));
    assert.throws(() => formatPrecompiledTag({ branch: "550", kernel: "5.15.0-69-generic", osTag: "ubuntu" }), userError(/OS tag "ubuntu" is not like ubuntu22\.04/));
  });

  it("formatConventionalTag checks the OS tag and the length", () => {
    assert.throws(() => formatConventionalTag({ version: "550.54.15", osTag: "ubuntu" }), userError(/OS tag "ubuntu" is not like ubuntu22\.04/));
    // An OS tag of valid form can still make the tag too long for a registry.
    const osTag = `${"u".repeat(115)}22.04`;
    assert.throws(() => formatConventionalTag({ version: "550.54.15", osTag }), userError(/is 130 characters long; registries allow at most 128$/));
  });

  it("a tag of 128 characters is allowed, 129 is not", () => {
    const tagOf = (osId: string) => `550.54.15-${osId}22.04`;
    assert.equal(tagOf("u".repeat(113)).length, 128);
    assert.equal(parseConventionalTag(tagOf("u".repeat(113))).osTag, `${"u".repeat(113)}22.04`);
    assert.throws(() => parseConventionalTag(tagOf("u".repeat(114))), userError(/is 129 characters long/));
  });

  it("full versions are matched whole", () => {
    for (const v of ["x550.54.15", "550.54.15x", "550.54.15.1"]) assert.equal(isFullDriverVersion(v), false, v);
  });

  it("says which part of a precompiled tag is wrong", () => {
    assert.throws(() => parsePrecompiledTag("nodashes"), userError(/^tag "nodashes" is not a precompiled driver tag <branch>-<kernel>-<os-tag>/));
    assert.throws(() => parsePrecompiledTag("abc-5.15.0-69-generic-ubuntu22.04"), userError(/"abc" is not a driver branch like 525$/));
  });

  // Surviving mutants in tag.ts, each equivalent:
  // - `first < 0` -> `first <= 0` (parsePrecompiledTag) and `dash < 0` -> `dash <= 0` (parseConventionalTag):
  //   a tag cannot start with '-' (checkTagText refuses it first), so the dash is never at 0.
  // - `first < 0 || first === last` -> `false || first === last`: without a dash both are -1, so
  //   `first === last` already holds.
  // - checkKernel `err instanceof UserError` -> true: parseKernel throws nothing but UserErrors.
});
