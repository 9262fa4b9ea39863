// Members of a watched or listed object's JSON that the caches drop anyway, cut from the text before it is
// parsed. Parsing a watch event was a fifth of the operator's CPU in a rollout (a profile of the
// 1,000-node switch), and managedFields are often half of an object's text and most of its
// objects: a tree of field names rebuilt on every change, only to be thrown away by the
// transform. On real nodes, status.images (every image the node holds) is larger still.
//
// Only text the cut is sure of goes: a member whose name stands as a key (its opening quote right
// after `{` or `,`, so the quote cannot be an escaped one inside a string) and whose value, an
// array or an object, is skipped as JSON lexes it. Anything else (whitespace before the name or
// the value, a scalar value, text that does not end as expected) is left in place for
// JSON.parse, and the transform drops it as before. Lists go through the same cut.

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COMMA = 0x2c;
const LBRACE = 0x7b;
const RBRACE = 0x7d;
const LBRACKET = 0x5b;
const RBRACKET = 0x5d;

/** The index of the quote that ends the string opened at `open`, or -1. */
function stringEnd(text: string, open: number): number {
  let from = open + 1;
  for (;;) {
    const q = text.indexOf('"', from);
    if (q < 0) return -1;
    // A quote after an odd run of backslashes is escaped.
    let backslashes = 0;
    for (let b = q - 1; text.charCodeAt(b) === BACKSLASH; b--) backslashes++;
    if (backslashes % 2 === 0) return q;
    from = q + 1;
  }
}

/** The index just past the array or object that opens at `open`, or -1 when the text ends first. */
function containerEnd(text: string, open: number): number {
  let depth = 0;
  for (let i = open; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === QUOTE) {
      i = stringEnd(text, i);
      if (i < 0) return -1;
    } else if (c === LBRACE || c === LBRACKET) {
      depth++;
    } else if ((c === RBRACE || c === RBRACKET) && --depth === 0) {
      return i + 1;
    }
  }
  return -1;
}

/** One scan finds every member to cut: its name as a key, right after `{` or `,`, and a value that opens `[` or `{`. */
const scans = new WeakMap<readonly string[], RegExp>();

function scanFor(names: readonly string[]): RegExp {
  let re = scans.get(names);
  if (!re) {
    for (const n of names) if (!/^\w+$/.test(n)) throw new Error(`unread member ${JSON.stringify(n)}: a name of letters, digits and _ only`);
    re = new RegExp(`[{,]"(?:${names.join("|")})":[[{]`, "g");
    scans.set(names, re);
  }
  return re;
}

/**
 * The JSON text without the members named `names` whose value is an array or an object, at any
 * depth, where the cut is sure (above); the same string when there is nothing to cut. Parsing the
 * result gives what parsing the text and deleting those members gives. Members with other values
 * stay: label and annotation maps hold only strings, so a label that happens to bear one of the
 * names is never cut. One scan of the text for all the names.
 */
export function withoutMembers(text: string, names: readonly string[]): string {
  const scan = scanFor(names);
  scan.lastIndex = 0;
  let found = scan.exec(text);
  if (!found) return text;
  let kept = "";
  let copiedTo = 0;
  while (found) {
    const key = found.index + 1;
    const end = containerEnd(text, scan.lastIndex - 1);
    if (end < 0) return text; // not JSON as expected: JSON.parse will say so
    // A comma cut with the member before this one leaves this one first in its object.
    if (text.charCodeAt(found.index) === COMMA && found.index >= copiedTo) {
      // `,"name":value`: the comma before it goes with it.
      kept += text.slice(copiedTo, found.index);
      copiedTo = end;
    } else {
      // `{"name":value,` or `{"name":value}`: the comma after it goes, if there is one.
      kept += text.slice(copiedTo, key);
      copiedTo = text.charCodeAt(end) === COMMA ? end + 1 : end;
    }
    scan.lastIndex = end;
    found = scan.exec(text);
  }
  return kept + text.slice(copiedTo);
}
