/**
 * True when every field set in `desired` has the same value in `live`.
 * Fields the API server defaulted (present only in `live`) don't count, so a
 * steady state compares equal and the controller writes nothing; a field
 * someone edited by hand does count, so drift is repaired.
 */
export function isSubset(desired: unknown, live: unknown): boolean {
  if (desired === null || typeof desired !== "object") return desired === live || (desired === undefined && live === undefined);
  if (Array.isArray(desired)) {
    return Array.isArray(live) && live.length === desired.length && desired.every((d, i) => isSubset(d, live[i]));
  }
  if (live === null || typeof live !== "object" || Array.isArray(live)) return false;
  const l = live as Record<string, unknown>;
  return Object.entries(desired as Record<string, unknown>).every(([k, v]) => v === undefined || isSubset(v, l[k]));
}

/** JSON with object keys sorted and undefined fields dropped: equal for equal content, whatever the key order. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  if (value !== null && typeof value === "object") {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(",")}}`;
  }
  return JSON.stringify(value);
}

/**
 * Two JSON values are equal, an undefined member being an absent one: what
 * canonicalJson(a) === canonicalJson(b) says, without building two strings (for values compared
 * on every watch event or every pass, equal most of the time).
 */
export function sameJson(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return false;
  if (Array.isArray(a) || Array.isArray(b)) {
    if (!Array.isArray(a) || !Array.isArray(b) || a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (!sameJson(a[i], b[i])) return false;
    return true;
  }
  return sameMembersExcept(a as Record<string, unknown>, b as Record<string, unknown>, NO_KEYS);
}

const NO_KEYS: ReadonlySet<string> = new Set();

/** Two objects' members are sameJson, those named in `except` left out (an informer's resourceVersion). */
export function sameMembersExcept(x: Readonly<Record<string, unknown>>, y: Readonly<Record<string, unknown>>, except: ReadonlySet<string>): boolean {
  let n = 0;
  for (const k in x) {
    if (x[k] === undefined || except.has(k)) continue;
    if (!sameJson(x[k], y[k])) return false;
    n++;
  }
  for (const k in y) if (y[k] !== undefined && !except.has(k)) n--;
  return n === 0;
}

/**
 * Two string maps (labels, annotations) hold the same entries; an absent map is an empty one.
 * What canonicalJson(a) === canonicalJson(b) says for them, without building two strings: node
 * watches compare labels on every event.
 */
export function sameStringMap(a: Readonly<Record<string, string>> | undefined, b: Readonly<Record<string, string>> | undefined): boolean {
  return a === b || sameMembersExcept(a ?? {}, b ?? {}, NO_KEYS);
}

/**
 * Freezes an object and everything it holds, so a result shared between callers (a memo) throws
 * on a write instead of changing under the next caller. Returns the same object.
 */
export function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === "object" && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}
