/** One benchmark: `run` prints its own measurements (seconds, requests, ratios). */
export interface Benchmark {
  name: string;
  run(): Promise<void>;
}

/** Seconds since `start` (from performance.now()), to two decimals. */
export function seconds(start: number): number {
  return Math.round((performance.now() - start) / 10) / 100;
}
