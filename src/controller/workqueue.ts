/**
 * A keyed work queue: a key added many times while waiting is processed once;
 * a key added while being processed is processed again afterwards; failures
 * retry with per-key exponential backoff and jitter.
 */
export class WorkQueue {
  private readonly queue: string[] = [];
  private readonly dirty = new Set<string>();
  private readonly processing = new Set<string>();
  private readonly failures = new Map<string, number>();
  /**
   * One timer per key, the earliest asked for. Passes ask for a later look on every pass (a
   * digest refresh, a step's poll, a status write put off): a timer per call made each pass
   * come back as another pass that long after, and that one ask again, so a busy minute's
   * passes repeated every interval for as long as the operator ran. The pass the earliest
   * timer starts asks again for what it still needs.
   */
  private readonly timers = new Map<string, { timer: NodeJS.Timeout; due: number }>();
  private wake: (() => void) | undefined;
  private readonly baseDelayMs: number;
  private readonly maxDelayMs: number;
  private readonly pacing: number;
  private readonly minGapMs: number;

  /**
   * `pacing`: after a key took d ms of CPU to handle, the next one waits d × pacing ms, so
   * events that arrive meanwhile fold into one pass. When each pass costs time in
   * proportion to the cluster, this caps the share of a core spent on back-to-back
   * passes at 1 / (1 + pacing), and the number of passes in a rollout falls as the
   * cluster grows: the CPU a rollout costs grows linearly, not quadratically. An
   * event after a quiet period is handled at once.
   *
   * `minGapMs`: the least pause after a pass, whatever it cost. For passes that are cheap
   * but many (one per pod event), it bounds how many a second there are, so their fixed
   * part stops counting once events come faster than that.
   */
  constructor(opts: { baseDelayMs?: number; maxDelayMs?: number; pacing?: number; minGapMs?: number } = {}) {
    this.baseDelayMs = opts.baseDelayMs ?? 200;
    this.maxDelayMs = opts.maxDelayMs ?? 60_000;
    this.pacing = opts.pacing ?? 0;
    this.minGapMs = opts.minGapMs ?? 0;
  }

  get depth(): number {
    return this.queue.length;
  }

  add(key: string): void {
    if (this.dirty.has(key)) return;
    this.dirty.add(key);
    if (!this.processing.has(key)) {
      this.queue.push(key);
      this.wake?.();
    }
  }

  /** Adds the key after `ms`, or sooner: a timer for the key that is due first stands, a later one is replaced. */
  addAfter(key: string, ms: number): void {
    const due = performance.now() + ms;
    const pending = this.timers.get(key);
    if (pending && pending.due <= due) return;
    if (pending) clearTimeout(pending.timer);
    const timer = setTimeout(() => {
      this.timers.delete(key);
      this.add(key);
    }, ms);
    this.timers.set(key, { timer, due });
  }

  /** Keys with a timer pending (the tests read it). */
  get delayed(): number {
    return this.timers.size;
  }

  /** Re-adds a failed key after a backoff that doubles with each consecutive failure. */
  retry(key: string): number {
    const n = (this.failures.get(key) ?? 0) + 1;
    this.failures.set(key, n);
    const base = Math.min(this.baseDelayMs * 2 ** (n - 1), this.maxDelayMs);
    const delay = Math.round(base / 2 + (Math.random() * base) / 2);
    this.addAfter(key, delay);
    return delay;
  }

  /** Clears a key's failure count after it succeeds. */
  forget(key: string): void {
    this.failures.delete(key);
  }

  /** Processes keys one at a time until the signal aborts. */
  async run(handle: (key: string) => Promise<void>, signal: AbortSignal): Promise<void> {
    signal.addEventListener("abort", () => this.wake?.(), { once: true });
    while (!signal.aborted) {
      const key = this.queue.shift();
      if (key === undefined) {
        await new Promise<void>((r) => (this.wake = r));
        this.wake = undefined;
        continue;
      }
      this.dirty.delete(key);
      this.processing.add(key);
      const cpu = process.cpuUsage();
      try {
        await handle(key);
      } finally {
        this.processing.delete(key);
        if (this.dirty.has(key)) this.queue.push(key);
      }
      // CPU time, not wall time: a pass that mostly waits on the API server costs little.
      const used = process.cpuUsage(cpu);
      const gap = Math.max(((used.user + used.system) / 1000) * this.pacing, this.minGapMs);
      if (gap > 0) await pause(gap, signal);
    }
    for (const { timer } of this.timers.values()) clearTimeout(timer);
  }
}

/** Resolves after `ms`, or at once when the signal aborts. */
function pause(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted || ms <= 0) return resolve();
    const done = () => {
      clearTimeout(t);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const t = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });
}
