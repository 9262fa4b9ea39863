import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { withoutMembers } from "./unread-members.ts";

/** What parsing the whole text and deleting the members whose value is an array or an object gives: the reference withoutMembers must match. */
function deleted(v: unknown, names: readonly string[]): unknown {
  if (Array.isArray(v)) return v.map((x) => deleted(x, names));
  if (v && typeof v === "object") {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) if (!(names.includes(k) && x !== null && typeof x === "object")) out[k] = deleted(x, names);
    return out;
  }
  return v;
}

test("withoutMembers: a watch event loses its managedFields and a node's images, and nothing else", () => {
  const event = {
    type: "MODIFIED",
    object: {
      kind: "Node",
      metadata: { name: "gpu-1", labels: { a: "b" }, managedFields: [{ manager: "kwok", fieldsV1: { "f:status": { 'k:{"type":"Ready"}': {} } } }] },
      status: { images: [{ names: ["nvcr.io/nvidia/driver:580"], sizeBytes: 1 }], nodeInfo: { kernelVersion: "6.8.0-1015-aws" } },
    },
  };
  const text = withoutMembers(JSON.stringify(event), ["managedFields", "images"]);
  assert.equal(text, '{"type":"MODIFIED","object":{"kind":"Node","metadata":{"name":"gpu-1","labels":{"a":"b"}},"status":{"nodeInfo":{"kernelVersion":"6.8.0-1015-aws"}}}}');
  // Nothing to cut: the very same string.
  const plain = '{"type":"ADDED","object":{"metadata":{"name":"x"}}}';
  assert.equal(withoutMembers(plain, ["managedFields"]), plain);
});

test("withoutMembers: a name inside a string, as a value, or with a string value (a label) stays; a member first or alone in its object goes cleanly", () => {
  const cases: [unknown, string][] = [
    [{ note: '"managedFields":[1]', managedFields: [2] }, '{"note":"\\"managedFields\\":[1]"}'],
    [{ a: "x,", b: 'managedFields":' }, '{"a":"x,","b":"managedFields\\":"}'],
    [{ managedFields: { "}": "]" }, b: 1 }, '{"b":1}'],
    [{ managedFields: {} }, "{}"],
    [{ labels: { managedFields: "x", images: "[" }, managedFields: null }, '{"labels":{"managedFields":"x","images":"["},"managedFields":null}'],
    // Not what JSON.stringify writes, but valid JSON: a name twice, the first one first in its object.
    ['{"managedFields":[1],"managedFields":[2],"b":3}', '{"b":3}'],
    [[{ managedFields: ['a\\"b]', { "]": '\\' }] }, { c: ["managedFields"] }], '[{},{"c":["managedFields"]}]'],
  ];
  for (const [value, want] of cases) {
    const text = typeof value === "string" ? value : JSON.stringify(value);
    assert.equal(withoutMembers(text, ["managedFields"]), want, text);
  }
});

test("withoutMembers: text it cannot be sure of is left whole", () => {
  // Whitespace before the name: not cut (JSON.parse reads it, the transform drops the member).
  const spaced = '{"a":1, "managedFields":[1]}';
  assert.equal(withoutMembers(spaced, ["managedFields"]), spaced);
  // A value that never ends: left for JSON.parse to reject.
  const cutShort = '{"a":1,"managedFields":[{"x":"y"';
  assert.equal(withoutMembers(cutShort, ["managedFields"]), cutShort);
  const unterminated = '{"a":1,"managedFields":["abc';
  assert.equal(withoutMembers(unterminated, ["managedFields"]), unterminated);
});

test("withoutMembers: parsing what is left equals parsing the whole and deleting the members (any JSON, tricky keys and strings)", () => {
  const tricky = fc.string({ unit: fc.constantFrom('"', "\\", ",", "{", "}", "[", "]", ":", "a", "m", "managedFields", "images"), maxLength: 12 });
  const key = fc.oneof(fc.constantFrom("managedFields", "images", "metadata", "a"), tricky);
  const leaf = fc.oneof(tricky, fc.integer(), fc.boolean(), fc.constant(null), fc.double({ noNaN: true, noDefaultInfinity: true }));
  const { value } = fc.letrec((tie) => ({
    value: fc.oneof({ depthSize: "small" }, leaf, fc.array(tie("value"), { maxLength: 4 }), fc.dictionary(key, tie("value"), { maxKeys: 5 })),
  }));
  const names = fc.subarray(["managedFields", "images", "a"], { minLength: 1 });
  fc.assert(
    fc.property(value, names, (v, ns) => {
      const text = JSON.stringify(v);
      // The reference parses the whole text too (JSON writes -0 as 0).
      assert.deepEqual(JSON.parse(withoutMembers(text, ns)), deleted(JSON.parse(text), ns));
      // Indented text has whitespace before every name: nothing is cut, and it parses as before.
      const pretty = JSON.stringify(v, null, 1);
      if (pretty !== undefined) assert.deepEqual(JSON.parse(withoutMembers(pretty, ns)), JSON.parse(pretty));
    }),
    { numRuns: 3000 },
  );
});

test("withoutMembers: a name that is not letters, digits and _ is refused, naming it (it would be read as a pattern)", () => {
  assert.throws(() => withoutMembers("{}", ["spec.volumes"]), /unread member "spec\.volumes": a name of letters, digits and _ only/);
  assert.throws(() => withoutMembers("{}", ["a|b"]), /"a\|b"/);
});
