/**
 * The `rel="next"` target of a `Link` header (RFC 8288), as the distribution
 * spec uses it for tag pages: `</v2/x/tags/list?n=100&last=b>; rel="next"`.
 */
export function nextLink(header: string | string[] | undefined): string | undefined {
  const values = Array.isArray(header) ? header : header === undefined ? [] : [header];
  for (const value of values) {
    for (const m of value.matchAll(/<([^>]*)>\s*((?:;\s*[^;,]*)*)/g)) {
      const params = m[2] ?? "";
      if (/;\s*rel\s*=\s*"?([^";]*\s)?next(\s[^";]*)?"?/i.test(params)) return m[1];
    }
  }
  return undefined;
}
