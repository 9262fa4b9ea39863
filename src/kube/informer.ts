import { isGone, type KubeClient, type Query } from "./client.ts";
import type { KubeObject } from "./types.ts";
import type { Logger } from "./log.ts";
import { UNREAD, withoutManagedFields } from "./transforms.ts";
import { sameMembersExcept } from "../core/diff.ts";

export type ChangeType = "added" | "modified" | "deleted";
export type ChangeHandler<T> = (type: ChangeType, obj: T, old?: T) => void;

/** Reduces an object to what the cache keeps (src/kube/transforms.ts); it may return a new object. */
export type Transform<T> = (obj: T) => T;

export const objectKey = (o: KubeObject) => (o.metadata.namespace ? `${o.metadata.namespace}/${o.metadata.name}` : (o.metadata.name ?? ""));

/**
 * A list+watch cache of one resource. It lists, then watches from the list's
 * resourceVersion with bookmarks; a 410 Gone relists, any other failure backs
 * off with jitter and resumes, so a dropped watch never silently stops.
 */
export class Informer<T extends KubeObject> {
  private readonly cache = new Map<string, T>();
  private readonly handlers: ChangeHandler<T>[] = [];
  private resourceVersion: string | undefined;
  private markSynced!: () => void;
  /** Resolves after the first complete list. */
  readonly synced = new Promise<void>((r) => (this.markSynced = r));
  /** Times the cache was rebuilt from a list (tests and metrics read it). */
  relists = 0;
  private readonly client: KubeClient;
  private readonly path: string;
  private readonly query: Query;
  private readonly log: Logger;
  private readonly transform: Transform<T>;
  private readonly quietUnchanged: boolean;
  private readonly maxBackoffMs: number;
  private readonly unread: readonly string[];
  /** Watched modifications not handed on: the object as cached did not change (see quietUnchanged). */
  unchangedSkipped = 0;
  /** Watched changes handed on to the handlers (added, modified, deleted); bookmarks are neither. */
  eventsHandled = 0;
  private running: Promise<void> | undefined;

  /**
   * `transform` runs on every listed or watched object before it is cached or handed to handlers;
   * by default only managedFields go. `quietUnchanged`: a modification that leaves the transformed
   * object as the cache has it, but for its resourceVersion, is not news: the cache keeps the
   * object it has (memos keyed on it stay good) and no handler hears of it. For caches whose
   * transform drops what changes most (a node's heartbeat times: every node, every few seconds),
   * so that a cached object's resourceVersion is that of the last change the transform keeps.
   * `maxBackoffMs`: the longest wait between failed watches (30 s, as client-go's reflectors);
   * an observer that must not miss changes after an outage waits less.
   * `unread`: members of a listed or watched object that are never parsed (managedFields by
   * default, which no cache keeps; a node's status.images); the transform must not read them.
   */
  constructor(client: KubeClient, path: string, query: Query, log: Logger, opts: { transform?: Transform<T>; quietUnchanged?: boolean; maxBackoffMs?: number; unread?: readonly string[] } = {}) {
    this.client = client;
    this.path = path;
    this.query = query;
    this.log = log;
    this.transform = opts.transform ?? withoutManagedFields;
    this.quietUnchanged = opts.quietUnchanged ?? false;
    this.maxBackoffMs = opts.maxBackoffMs ?? 30_000;
    this.unread = opts.unread ?? UNREAD;
  }

  /** The cache's object stays: same content (see the constructor's quietUnchanged). */
  private keeps(old: T | undefined, item: T): old is T {
    if (old === undefined) return false;
    if (old.metadata.resourceVersion === item.metadata.resourceVersion) return true;
    return this.quietUnchanged && sameButVersion(old, item);
  }

  onChange(handler: ChangeHandler<T>): void {
    this.handlers.push(handler);
  }

  /** The resource watched, for metrics: the path's last segment ("nodes", "pods"). */
  get resource(): string {
    return this.path.slice(this.path.lastIndexOf("/") + 1);
  }

  get(key: string): T | undefined {
    return this.cache.get(key);
  }

  list(): T[] {
    return [...this.cache.values()];
  }

  private emit(type: ChangeType, obj: T, old?: T): void {
    for (const h of this.handlers) h(type, obj, old);
  }

  private async relist(signal: AbortSignal): Promise<void> {
    // Transformed page by page: a relist of thousands of whole objects was the operator's peak of memory.
    const { items, metadata } = await this.client.list<T>(this.path, this.query, { signal, each: this.transform, unread: this.unread });
    this.relists++;
    // The cache takes the list's state in one step before any handler hears of it: a handler that
    // reads the cache meanwhile must not see what was created in a gap beside what was deleted in
    // it (two driver pods on a node, at a moment that never was). Deletions are told first.
    const next = new Map<string, T>();
    const changed: [ChangeType, T, T | undefined][] = [];
    for (const item of items) {
      const key = objectKey(item);
      const old = this.cache.get(key);
      // An object the list gives at the version the cache has is the one handlers have: memos keyed on it stay good.
      const unchanged = this.keeps(old, item);
      if (!old) changed.push(["added", item, undefined]);
      else if (!unchanged) changed.push(["modified", item, old]);
      next.set(key, unchanged ? old : item);
    }
    const deleted = [...this.cache].filter(([key]) => !next.has(key)).map(([, old]) => old);
    this.cache.clear();
    for (const [key, item] of next) this.cache.set(key, item);
    for (const old of deleted) this.emit("deleted", old);
    for (const [type, item, old] of changed) this.emit(type, item, old);
    this.resourceVersion = metadata.resourceVersion;
    this.markSynced();
  }

  /**
   * Runs until the signal aborts. One informer may serve several controllers (one cache and
   * one watch of the nodes for all): each calls run, and all get the one loop.
   */
  run(signal: AbortSignal): Promise<void> {
    this.running ??= this.loop(signal);
    return this.running;
  }

  private async loop(signal: AbortSignal): Promise<void> {
    let backoffMs = 200;
    while (!signal.aborted) {
      try {
        if (this.resourceVersion === undefined) await this.relist(signal);
        // The server ends each watch after timeoutSeconds; jitter spreads the re-watches.
        const timeoutSeconds = 240 + Math.floor(Math.random() * 120);
        await this.client.watch<T>(
          this.path,
          { ...this.query, resourceVersion: this.resourceVersion, allowWatchBookmarks: true, timeoutSeconds },
          (event) => {
            const rv = event.object.metadata?.resourceVersion;
            if (event.type === "BOOKMARK") {
              if (rv) this.resourceVersion = rv;
              return;
            }
            const obj = this.transform(event.object);
            const key = objectKey(obj);
            const old = this.cache.get(key);
            if (event.type === "DELETED") {
              this.cache.delete(key);
              this.eventsHandled++;
              this.emit("deleted", obj);
            } else if (this.quietUnchanged && this.keeps(old, obj)) {
              this.unchangedSkipped++;
            } else {
              this.cache.set(key, obj);
              this.eventsHandled++;
              this.emit(old ? "modified" : "added", obj, old);
            }
            if (rv) this.resourceVersion = rv;
          },
          signal,
          { unread: this.unread },
        );
        backoffMs = 200;
      } catch (err) {
        if (signal.aborted) return;
        if (isGone(err)) {
          this.log.info("watch expired; relisting", { path: this.path });
          this.resourceVersion = undefined;
          continue;
        }
        const wait = backoffMs / 2 + Math.random() * backoffMs;
        this.log.warn("watch failed; retrying", { path: this.path, error: (err as Error).message, retryInMs: Math.round(wait) });
        await sleep(wait, signal);
        backoffMs = Math.min(backoffMs * 2, this.maxBackoffMs);
      }
    }
  }
}

const VERSION: ReadonlySet<string> = new Set(["resourceVersion"]);
const TYPE_MEMBERS: ReadonlySet<string> = new Set(["metadata", "kind", "apiVersion"]);

/**
 * Deep equality of two transformed objects, but for metadata.resourceVersion, kind and apiVersion
 * (one informer's objects are all of one type, and a list's items come without them: the first
 * watched change of a listed object would otherwise always differ). It runs on every watched
 * event of a cache that asks for it, and most calls are equal all the way down.
 */
export function sameButVersion(a: KubeObject, b: KubeObject): boolean {
  const fields = (o: object) => o as Record<string, unknown>;
  return sameMembersExcept(fields(a.metadata), fields(b.metadata), VERSION) && sameMembersExcept(fields(a), fields(b), TYPE_MEMBERS);
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal?.removeEventListener("abort", done);
      resolve();
    }
    signal?.addEventListener("abort", done, { once: true });
  });
}
