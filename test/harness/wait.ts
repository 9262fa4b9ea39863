/**
 * Polls until `check` returns a value that is not undefined, or fails with the
 * last observation after `timeoutMs`. Waiting is for an eventually consistent
 * system, not a timing assertion: the timeout is only a hang guard.
 */
export async function eventually<T>(
  what: string,
  check: () => Promise<T | undefined>,
  opts: { timeoutMs?: number; intervalMs?: number } = {},
): Promise<T> {
  const deadline = Date.now() + (opts.timeoutMs ?? 60_000);
  let last: unknown = "no observation yet";
  for (;;) {
    try {
      const v = await check();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; last: ${last instanceof Error ? last.message : String(last)}`);
    await new Promise((r) => setTimeout(r, opts.intervalMs ?? 250));
  }
}
