/** One authentication challenge from a `WWW-Authenticate` header. */
export interface Challenge {
  /** Lower-cased scheme: "bearer", "basic", … */
  scheme: string;
  /** Parameters with lower-cased names (realm, service, scope, error). */
  params: Record<string, string>;
}

/**
 * Parses a `WWW-Authenticate` header (RFC 7235) into its challenges. Quoted
 * values may hold commas (`scope="repository:a:pull,push"`), so this walks the
 * header instead of splitting it.
 */
export function parseChallenges(header: string): Challenge[] {
  const out: Challenge[] = [];
  let i = 0;
  const n = header.length;
  const skipSpace = () => { while (i < n && (header[i] === " " || header[i] === "\t" || header[i] === ",")) i++; };
  const readToken = () => {
    const start = i;
    while (i < n && /[!#$%&'*+\-.^_`|~0-9A-Za-z]/.test(header[i]!)) i++;
    return header.slice(start, i);
  };
  let current: Challenge | undefined;
  while (i < n) {
    skipSpace();
    if (i >= n) break;
    const token = readToken();
    if (!token) { i++; continue; }
    let j = i;
    while (j < n && (header[j] === " " || header[j] === "\t")) j++;
    if (header[j] === "=") {
      // A parameter of the current challenge (token68 values end up here too).
      i = j + 1;
      while (i < n && (header[i] === " " || header[i] === "\t")) i++;
      let value = "";
      if (header[i] === '"') {
        i++;
        while (i < n && header[i] !== '"') {
          if (header[i] === "\\" && i + 1 < n) i++;
          value += header[i];
          i++;
        }
        i++;
      } else {
        const start = i;
        while (i < n && header[i] !== ",") i++;
        value = header.slice(start, i).trim();
      }
      if (current) current.params[token.toLowerCase()] = value;
    } else {
      current = { scheme: token.toLowerCase(), params: {} };
      out.push(current);
    }
  }
  return out;
}
