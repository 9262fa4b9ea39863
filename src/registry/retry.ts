/** When to try a request again: the retry policy, without any I/O. */
export interface RetryPolicy {
  /** Retries after the first attempt (so attempts = retries + 1). */
  retries: number;
  /** First backoff step in milliseconds; doubles each retry. */
  baseDelayMs: number;
  /** No single wait is longer than this; a longer Retry-After gives up instead. */
  maxDelayMs: number;
}

export const defaultRetryPolicy: RetryPolicy = { retries: 4, baseDelayMs: 250, maxDelayMs: 20_000 };

/** Statuses worth another try: rate limiting and server-side failures. */
export function isRetryableStatus(status: number): boolean {
  return status === 429 || (status >= 500 && status <= 599 && status !== 501 && status !== 505);
}

/**
 * Milliseconds a `Retry-After` header asks for: delta-seconds or an HTTP
 * date. Undefined when absent or unreadable, so the caller backs off instead.
 */
export function parseRetryAfter(value: string | string[] | undefined, now = Date.now()): number | undefined {
  const v = (Array.isArray(value) ? value[0] : value)?.trim();
  if (!v) return undefined;
  if (/^\d+$/.test(v)) return Number(v) * 1000;
  const at = Date.parse(v);
  if (Number.isNaN(at)) return undefined;
  return Math.max(0, at - now);
}

/**
 * Exponential backoff with "equal jitter": half the step is fixed, half random,
 * so clients that failed together do not retry together, yet never retry at once.
 */
export function backoffDelay(retry: number, policy: RetryPolicy, random = Math.random): number {
  const step = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** retry);
  return Math.round(step / 2 + random() * (step / 2));
}
