import type { WorkQueue } from "./workqueue.ts";

/** What the loop needs of a cache (an Informer of any object type). */
interface Cache {
  readonly synced: Promise<void>;
  run(signal: AbortSignal): Promise<void>;
}

/** Resolves once every cache has listed. */
export async function cachesSynced(informers: readonly Cache[]): Promise<void> {
  await Promise.all(informers.map((i) => i.synced));
}

/**
 * A controller's life: run its caches, queue `key` once they have synced (or stopped), then
 * process the queue until the signal aborts. Shared by the driver and operand controllers.
 */
export async function runController(informers: readonly Cache[], queue: WorkQueue, key: string, process: (key: string) => Promise<void>, signal: AbortSignal): Promise<void> {
  const caches = informers.map((i) => i.run(signal));
  await Promise.race([cachesSynced(informers), Promise.all(caches)]);
  queue.add(key);
  await Promise.all([...caches, queue.run(process, signal)]);
}
