/**
 * A small Prometheus registry (counters, gauges, histograms with labels) and
 * its text exposition format; enough for the operator's /metrics.
 */
type Labels = Record<string, string>;

const labelKey = (l: Labels) => JSON.stringify(Object.entries(l).sort(([a], [b]) => a.localeCompare(b)));
const escape = (v: string) => v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"');
const fmtLabels = (l: Labels, extra: Labels = {}) => {
  const all = { ...l, ...extra };
  const parts = Object.entries(all).map(([k, v]) => `${k}="${escape(v)}"`);
  return parts.length ? `{${parts.join(",")}}` : "";
};

interface Metric {
  render(): string;
}

export class Counter implements Metric {
  private readonly values = new Map<string, { labels: Labels; value: number }>();
  readonly name: string;
  readonly help: string;
  constructor(name: string, help: string) {
    this.name = name;
    this.help = help;
  }
  inc(labels: Labels = {}, by = 1): void {
    const k = labelKey(labels);
    const v = this.values.get(k) ?? { labels, value: 0 };
    v.value += by;
    this.values.set(k, v);
  }
  get(labels: Labels = {}): number {
    return this.values.get(labelKey(labels))?.value ?? 0;
  }
  /** Mirrors a total counted elsewhere (e.g. the API client's request counts). */
  setTotal(labels: Labels, total: number): void {
    this.values.set(labelKey(labels), { labels, value: total });
  }
  render(): string {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} counter`];
    for (const { labels, value } of this.values.values()) lines.push(`${this.name}${fmtLabels(labels)} ${value}`);
    return lines.join("\n");
  }
}

export class Gauge implements Metric {
  private values = new Map<string, { labels: Labels; value: number }>();
  readonly name: string;
  readonly help: string;
  constructor(name: string, help: string) {
    this.name = name;
    this.help = help;
  }
  set(value: number, labels: Labels = {}): void {
    this.values.set(labelKey(labels), { labels, value });
  }
  /** Replaces every series at once, so label sets that disappeared are dropped. */
  replace(series: { labels: Labels; value: number }[]): void {
    this.values = new Map(series.map((s) => [labelKey(s.labels), s]));
  }
  get(labels: Labels = {}): number | undefined {
    return this.values.get(labelKey(labels))?.value;
  }
  render(): string {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} gauge`];
    for (const { labels, value } of this.values.values()) lines.push(`${this.name}${fmtLabels(labels)} ${value}`);
    return lines.join("\n");
  }
}

export class Histogram implements Metric {
  private readonly series = new Map<string, { labels: Labels; counts: number[]; sum: number; count: number }>();
  readonly name: string;
  readonly help: string;
  readonly buckets: number[];
  constructor(name: string, help: string, buckets = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]) {
    this.name = name;
    this.help = help;
    this.buckets = buckets;
  }
  observe(value: number, labels: Labels = {}): void {
    const k = labelKey(labels);
    const s = this.series.get(k) ?? { labels, counts: this.buckets.map(() => 0), sum: 0, count: 0 };
    this.buckets.forEach((b, i) => {
      if (value <= b) s.counts[i]! += 1;
    });
    s.sum += value;
    s.count += 1;
    this.series.set(k, s);
  }
  render(): string {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} histogram`];
    for (const s of this.series.values()) {
      this.buckets.forEach((b, i) => lines.push(`${this.name}_bucket${fmtLabels(s.labels, { le: String(b) })} ${s.counts[i]}`));
      lines.push(`${this.name}_bucket${fmtLabels(s.labels, { le: "+Inf" })} ${s.count}`);
      lines.push(`${this.name}_sum${fmtLabels(s.labels)} ${s.sum}`);
      lines.push(`${this.name}_count${fmtLabels(s.labels)} ${s.count}`);
    }
    return lines.join("\n");
  }
}

/** The operator's metrics. */
export class OperatorMetrics {
  readonly reconciles = new Counter("gpuop_reconcile_total", "Reconciles of the driver state, by result.");
  readonly errors = new Counter("gpuop_reconcile_errors_total", "Reconciles that failed.");
  readonly duration = new Histogram("gpuop_reconcile_duration_seconds", "Time spent in one reconcile.");
  readonly latency = new Histogram("gpuop_reconcile_latency_seconds", "From the first event a reconcile handles to its writes issued (queue wait included).", [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60]);
  readonly queueDepth = new Gauge("gpuop_workqueue_depth", "Keys waiting in the work queue.");
  readonly pools = new Gauge("gpuop_driver_pools", "Driver pools (one DaemonSet each), by mode.");
  readonly nodes = new Gauge("gpuop_gpu_nodes", "GPU nodes, by driver state.");
  readonly apiRequests = new Counter("gpuop_api_requests_total", "Requests made to the Kubernetes API, by verb.");
  readonly leader = new Gauge("gpuop_leader", "1 while this replica leads.");
  readonly heapUsed = new Gauge("gpuop_heap_used_bytes", "V8 heap in use (the informer caches live here), read at each scrape.");

  render(): string {
    this.heapUsed.set(process.memoryUsage().heapUsed);
    return [this.reconciles, this.errors, this.duration, this.latency, this.queueDepth, this.pools, this.nodes, this.apiRequests, this.leader, this.heapUsed]
      .map((m) => m.render())
      .join("\n") + "\n";
  }
}
