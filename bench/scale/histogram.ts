// Quantiles and totals from Prometheus series scraped twice (the difference is one phase).

/** Cumulative count per bucket upper bound (`+Inf` as Infinity). */
export type HistogramSnapshot = Map<number, number>;

export function parseHistogram(text: string, name: string): HistogramSnapshot {
  const out: HistogramSnapshot = new Map();
  const re = new RegExp(`^${name}_bucket\\{le="([^"]+)"\\} (\\d+(?:\\.\\d+)?)$`, "gm");
  for (const m of text.matchAll(re)) out.set(m[1] === "+Inf" ? Infinity : Number(m[1]), Number(m[2]));
  return out;
}

/** p50 and p99 of the observations between two snapshots, as the bucket bound they fall under ("≤ 0.25"). */
export function latencyQuantile(before: HistogramSnapshot, after: HistogramSnapshot): { p50: string; p99: string; count: number } {
  const bounds = [...after.keys()].sort((a, b) => a - b);
  const cum = bounds.map((b) => (after.get(b) ?? 0) - (before.get(b) ?? 0));
  const count = cum[cum.length - 1] ?? 0;
  const q = (p: number) => {
    if (count === 0) return "n/a";
    const i = cum.findIndex((c) => c >= p * count);
    const b = bounds[i] ?? Infinity;
    return b === Infinity ? `> ${bounds[bounds.length - 2]}` : `≤ ${b}`;
  };
  return { p50: q(0.5), p99: q(0.99), count };
}

/** The `_sum` and `_count` of a histogram, per label set as written (`{kind="major"}`, or "" for none). */
export function histogramTotals(text: string, name: string): Map<string, { sum: number; count: number }> {
  const out = new Map<string, { sum: number; count: number }>();
  const re = new RegExp(`^${name}_(sum|count)(\\{[^}]*\\})? (\\S+)$`, "gm");
  for (const m of text.matchAll(re)) {
    const key = m[2] ?? "";
    const t = out.get(key) ?? { sum: 0, count: 0 };
    t[m[1] as "sum" | "count"] = Number(m[3]);
    out.set(key, t);
  }
  return out;
}

/** What a histogram gained between two scrapes, per label set: observations and their total. */
export function totalsBetween(before: string, after: string, name: string): Map<string, { sum: number; count: number }> {
  const b = histogramTotals(before, name);
  const out = new Map<string, { sum: number; count: number }>();
  for (const [key, a] of histogramTotals(after, name)) {
    const was = b.get(key) ?? { sum: 0, count: 0 };
    out.set(key, { sum: a.sum - was.sum, count: a.count - was.count });
  }
  return out;
}

/** What each labelled series of a counter gained between two scrapes, by its label set as written (`resource="nodes",outcome="handled"`). */
export function counterBetween(before: string, after: string, name: string): Map<string, number> {
  const values = (text: string) => new Map([...text.matchAll(new RegExp(`^${name}\\{([^}]*)\\} (\\S+)$`, "gm"))].map((m) => [m[1]!, Number(m[2])]));
  const was = values(before);
  return new Map([...values(after)].map(([labels, n]) => [labels, n - (was.get(labels) ?? 0)]));
}
