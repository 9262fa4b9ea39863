/**
 * The operator's metrics on prom-client: gpuop's own series (counters, gauges, histograms with
 * labels) plus prom-client's default process and Node.js runtime metrics (resident memory, CPU,
 * open fds, event-loop lag, GC), which every Prometheus target is expected to have.
 *
 * The small classes below keep the interface the controller was written against (inc, set,
 * replace, setTotal, observe, get); each is backed by one prom-client metric.
 */
import { collectDefaultMetrics, Counter as PromCounter, Gauge as PromGauge, Histogram as PromHistogram, Registry } from "prom-client";

type Labels = Record<string, string>;

// Label names are ASCII: a code-unit order is enough, and localeCompare would bring ICU's
// collation data into memory (3 MiB of RSS, measured) for it.
const labelKey = (l: Labels) => JSON.stringify(Object.entries(l).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));

/**
 * prom-client needs a metric's label names up front. Given, the metric exists (and is exposed)
 * from the start; otherwise it is made on first use from that call's label names.
 */
abstract class Metric<M extends PromCounter | PromGauge | PromHistogram> {
  readonly name: string;
  readonly help: string;
  /** Where the metric is registered: OperatorMetrics' registry, or its own. */
  readonly registry: Registry;
  private metric?: M;

  constructor(name: string, help: string, labelNames: readonly string[] | undefined, registry: Registry | undefined) {
    this.name = name;
    this.help = help;
    this.registry = registry ?? new Registry();
    if (labelNames) this.metric = this.make([...labelNames]);
  }

  protected abstract make(labelNames: string[]): M;

  /** The prom-client metric, if made yet. */
  protected made(): M | undefined {
    return this.metric;
  }

  protected prom(labels: Labels): M {
    this.metric ??= this.make(Object.keys(labels).sort());
    return this.metric;
  }

  /** This metric alone in Prometheus text format. */
  async render(): Promise<string> {
    if (!this.metric) return `# HELP ${this.name} ${this.help}\n# TYPE ${this.name} ${this.type}\n`;
    return this.registry.getSingleMetricAsString(this.name);
  }

  protected abstract readonly type: string;
}

export class Counter extends Metric<PromCounter> {
  protected readonly type = "counter";
  private readonly values = new Map<string, number>();

  constructor(name: string, help: string, labelNames?: readonly string[], registry?: Registry) {
    super(name, help, labelNames, registry);
  }

  protected make(labelNames: string[]): PromCounter {
    return new PromCounter({ name: this.name, help: this.help, labelNames, registers: [this.registry] });
  }

  inc(labels: Labels = {}, by = 1): void {
    this.prom(labels).inc(labels, by);
    const k = labelKey(labels);
    this.values.set(k, (this.values.get(k) ?? 0) + by);
  }

  get(labels: Labels = {}): number {
    return this.values.get(labelKey(labels)) ?? 0;
  }

  /** Mirrors a total counted elsewhere (e.g. the API client's request counts). */
  setTotal(labels: Labels, total: number): void {
    const current = this.get(labels);
    if (total > current) this.inc(labels, total - current);
  }
}

export class Gauge extends Metric<PromGauge> {
  protected readonly type = "gauge";
  private values = new Map<string, number>();

  constructor(name: string, help: string, labelNames?: readonly string[], registry?: Registry) {
    super(name, help, labelNames, registry);
  }

  protected make(labelNames: string[]): PromGauge {
    return new PromGauge({ name: this.name, help: this.help, labelNames, registers: [this.registry] });
  }

  set(value: number, labels: Labels = {}): void {
    this.prom(labels).set(labels, value);
    this.values.set(labelKey(labels), value);
  }

  /** Replaces every series at once, so label sets that disappeared are dropped. */
  replace(series: { labels: Labels; value: number }[]): void {
    const first = series[0];
    (first ? this.prom(first.labels) : this.made())?.reset();
    this.values = new Map();
    for (const s of series) this.set(s.value, s.labels);
  }

  get(labels: Labels = {}): number | undefined {
    return this.values.get(labelKey(labels));
  }
}

export class Histogram extends Metric<PromHistogram> {
  protected readonly type = "histogram";
  readonly buckets: number[];

  constructor(name: string, help: string, buckets = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10], labelNames?: readonly string[], registry?: Registry) {
    // The buckets must be set before the parent makes the metric.
    super(name, help, undefined, registry);
    this.buckets = buckets;
    if (labelNames) this.prom(Object.fromEntries(labelNames.map((l) => [l, ""])));
  }

  protected make(labelNames: string[]): PromHistogram {
    return new PromHistogram({ name: this.name, help: this.help, labelNames, buckets: this.buckets, registers: [this.registry] });
  }

  observe(value: number, labels: Labels = {}): void {
    this.prom(labels).observe(labels, value);
  }
}

/** The operator's metrics, and the process and runtime metrics, in one registry. */
export class OperatorMetrics {
  readonly registry = new Registry();
  readonly reconciles = new Counter("gpuop_reconcile_total", "Reconciles of the driver state, by result.", ["result"], this.registry);
  readonly errors = new Counter("gpuop_reconcile_errors_total", "Reconciles that failed.", [], this.registry);
  readonly duration = new Histogram("gpuop_reconcile_duration_seconds", "Time spent in one reconcile.", undefined, [], this.registry);
  readonly operandDuration = new Histogram("gpuop_operand_reconcile_duration_seconds", "Time spent in one reconcile of the operands (toolkit, device plugin, GFD, DCGM exporter, validator).", undefined, [], this.registry);
  readonly latency = new Histogram("gpuop_reconcile_latency_seconds", "From the first event a reconcile handles to its writes issued (queue wait included).", [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60], [], this.registry);
  readonly heapUsed = new Gauge("gpuop_heap_used_bytes", "V8 heap in use (the informer caches live here), read at each scrape.", [], this.registry);
  readonly queueDepth = new Gauge("gpuop_workqueue_depth", "Keys waiting in the work queue.", [], this.registry);
  readonly pools = new Gauge("gpuop_driver_pools", "Driver pools (one DaemonSet each), by mode.", ["mode"], this.registry);
  readonly nodes = new Gauge("gpuop_gpu_nodes", "GPU nodes, by driver state.", ["state"], this.registry);
  readonly nodeDrivers = new Gauge("gpuop_gpu_node_drivers", "GPU nodes of a precompiled policy, by the driver they get: precompiled, fallback (conventional) or none.", ["mode"], this.registry);
  readonly watchEvents = new Counter("gpuop_watch_events_total", "Changes the watches brought, by resource and outcome: handled (the cache and the controllers took it) or unchanged (nothing the cache keeps changed: a node's heartbeat).", ["resource", "outcome"], this.registry);
  readonly apiRequests = new Counter("gpuop_api_requests_total", "Requests made to the Kubernetes API, by verb.", ["verb"], this.registry);
  readonly leader = new Gauge("gpuop_leader", "1 while this replica leads.", [], this.registry);
  readonly upgradeStates = new Gauge("gpuop_driver_upgrade_nodes", "GPU nodes by driver upgrade state (nvidia.com/gpu-driver-upgrade-state).", ["state"], this.registry);
  readonly operandNodes = new Gauge("gpuop_operand_nodes", "GPU nodes meant to run each enabled operand (toolkit, devicePlugin, gfd, dcgmExporter, validator), by state: ready, starting, waiting.", ["operand", "state"], this.registry);

  constructor() {
    // The event-loop lag is sampled every 100 ms, not prom-client's 10: each sample wakes the loop,
    // and at 10 ms that alone was 6 ms of CPU a second in an idle process with these metrics (0.8 at
    // 100 ms, measured), paid for every second of a rollout too. Ten samples a second still fill
    // the percentiles of any scrape.
    collectDefaultMetrics({ register: this.registry, eventLoopMonitoringPrecision: 100 });
  }

  /** The Content-Type of render()'s text. */
  get contentType(): string {
    return this.registry.contentType;
  }

  /**
   * Every series in Prometheus text format. A metric field made without this registry
   * (`new Counter(name, help)`) is exposed too, after the registered ones.
   */
  async render(): Promise<string> {
    this.heapUsed.set(process.memoryUsage().heapUsed);
    const own = (Object.values(this) as unknown[]).filter((m): m is Counter | Gauge | Histogram => (m instanceof Counter || m instanceof Gauge || m instanceof Histogram) && m.registry !== this.registry);
    const texts = await Promise.all([this.registry.metrics(), ...own.map((m) => m.render())]);
    return texts.map((t) => (t.endsWith("\n") ? t : `${t}\n`)).join("");
  }
}
