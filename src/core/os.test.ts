import { describe, it } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { UserError } from "./errors.ts";
import { osTagArb } from "./arbitraries.test.ts";
import {
  NFD_OS_ID_LABEL,
  NFD_OS_VERSION_ID_LABEL,
  formatOsTag,
  isOsTag,
  osReleaseFromLabels,
  osReleaseFromOsImage,
  osTagFromLabels,
  parseOsTag,
} from "./os.ts";

const labels = (id?: string, versionId?: string): Record<string, string> => ({
  "kubernetes.io/arch": "amd64",
  ...(id === undefined ? {} : { [NFD_OS_ID_LABEL]: id }),
  ...(versionId === undefined ? {} : { [NFD_OS_VERSION_ID_LABEL]: versionId }),
});

const userError = (message: RegExp) => (err: unknown) => err instanceof UserError && message.test(err.message);

describe("osTagFromLabels", () => {
  const cases: [string, string, string][] = [
    ["ubuntu", "22.04", "ubuntu22.04"],
    ["ubuntu", "24.04", "ubuntu24.04"],
    ["rhel", "9.4", "rhel9"],
    ["rhel", "8.10", "rhel8"],
    ["rocky", "9.3", "rocky9"],
    ["ol", "8.9", "ol8"],
    ["sles", "15.5", "sles15.5"],
    ["debian", "12", "debian12"],
  ];
  for (const [id, versionId, tag] of cases) {
    it(`${id} ${versionId} -> ${tag}`, () => assert.equal(osTagFromLabels(labels(id, versionId)), tag));
  }

  it("names the missing label", () => {
    assert.throws(() => osTagFromLabels(labels(undefined, "22.04")), userError(/system-os_release\.ID is missing/));
    assert.throws(() => osTagFromLabels(labels("ubuntu")), userError(/system-os_release\.VERSION_ID is missing/));
    assert.throws(() => osTagFromLabels(labels("ubuntu", "")), userError(/VERSION_ID is missing.*Node Feature Discovery/));
  });

  it("names the label whose value cannot form a tag", () => {
    assert.throws(() => osTagFromLabels(labels("opensuse-leap", "15.5")), userError(/ID="opensuse-leap" cannot form an OS tag/));
    assert.throws(() => osTagFromLabels(labels("ubuntu", "jammy")), userError(/VERSION_ID="jammy" is not a dotted number/));
  });

  it("returns the os-release parts", () => {
    assert.deepEqual(osReleaseFromLabels(labels("rhel", "9.4")), { id: "rhel", versionId: "9" });
  });
});

describe("parseOsTag / formatOsTag", () => {
  it("parses real tags", () => {
    assert.deepEqual(parseOsTag("ubuntu22.04"), { id: "ubuntu", versionId: "22.04" });
    assert.deepEqual(parseOsTag("rhel9"), { id: "rhel", versionId: "9" });
  });

  for (const bad of ["", "ubuntu", "22.04", "ubuntu-22.04", "Ubuntu22.04", "ubuntu22.", "ubuntu22..04"]) {
    it(`refuses ${JSON.stringify(bad)}`, () => {
      assert.throws(() => parseOsTag(bad), userError(/OS tag ".*" is not an os-release ID followed by its VERSION_ID/));
      assert.equal(isOsTag(bad), false);
    });
  }

  it("refuses parts that cannot form a tag", () => {
    assert.throws(() => formatOsTag({ id: "Ubuntu", versionId: "22.04" }), userError(/OS ID "Ubuntu"/));
    assert.throws(() => formatOsTag({ id: "ubuntu", versionId: "22.04-lts" }), userError(/VERSION_ID "22\.04-lts"/));
  });

  it("round-trips", () => {
    fc.assert(
      fc.property(osTagArb, (tag) => {
        assert.equal(formatOsTag(parseOsTag(tag)), tag);
        const os = parseOsTag(tag);
        assert.deepEqual(parseOsTag(formatOsTag(os)), os);
      }),
    );
  });
});

it("osReleaseFromOsImage reads the kubelet's osImage (os-release PRETTY_NAME)", () => {
  const cases: [string, string][] = [
    ["Ubuntu 22.04.4 LTS", "ubuntu22.04"],
    ["Ubuntu 24.04 LTS", "ubuntu24.04"],
    ["Ubuntu 20.04.6 LTS", "ubuntu20.04"],
    ["Red Hat Enterprise Linux 9.4 (Plow)", "rhel9"],
    ["Red Hat Enterprise Linux Server 8.10 (Ootpa)", "rhel8"],
    ["Rocky Linux 9.3 (Blue Onyx)", "rocky9"],
    ["Oracle Linux Server 8.9", "ol8"],
    ["Debian GNU/Linux 12 (bookworm)", "debian12"],
  ];
  for (const [image, tag] of cases) assert.equal(formatOsTag(osReleaseFromOsImage(image)), tag, image);
  for (const bad of ["Red Hat Enterprise Linux CoreOS 415.92.202402201450-0 (Plow)", "Container-Optimized OS from Google", "Bottlerocket OS 1.19.0 (aws-k8s-1.29)", "Ubuntu", ""]) {
    assert.throws(() => osReleaseFromOsImage(bad), /status.nodeInfo.osImage.*Node Feature Discovery/, bad);
  }
});
