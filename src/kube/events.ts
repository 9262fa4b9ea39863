import { stripControl } from "../core/security.ts";
import type { KubeClient } from "./client.ts";
import type { Logger } from "./log.ts";
import type { KubeObject } from "./types.ts";

/** Events sent at once; the rest wait their turn in order. */
const SENDERS = 4;
/** Events waiting beyond this are dropped (and counted in the log): an API server that refuses them must not grow the operator's memory. */
const MAX_WAITING = 5000;

/**
 * Records core/v1 Events about an object. Callers emit on transitions only, so
 * a steady state writes nothing. Events are sent in the background, a few at a
 * time and in order: a reconcile pass does not wait on them (hundreds of node
 * Events in one pass of a large upgrade made the pass seconds longer). The
 * promise `record` returns settles once the Event is written, for those who
 * need to know.
 */
export class EventRecorder {
  private readonly client: KubeClient;
  private readonly component: string;
  private readonly log: Logger;
  private readonly waiting: (() => Promise<void>)[] = [];
  private sending = 0;
  private dropped = 0;

  constructor(client: KubeClient, component: string, log: Logger) {
    this.client = client;
    this.component = component;
    this.log = log;
  }

  record(obj: KubeObject, type: "Normal" | "Warning", reason: string, message: string): Promise<void> {
    if (this.waiting.length >= MAX_WAITING) {
      if (this.dropped++ % 1000 === 0) this.log.warn("too many Events waiting to be written; dropping some", { reason, dropped: this.dropped });
      return Promise.resolve();
    }
    return new Promise<void>((resolve) => {
      this.waiting.push(() => this.send(obj, type, reason, message).then(resolve));
      this.pump();
    });
  }

  private pump(): void {
    while (this.sending < SENDERS && this.waiting.length > 0) {
      const next = this.waiting.shift()!;
      this.sending++;
      void next().finally(() => {
        this.sending--;
        this.pump();
      });
    }
  }

  private async send(obj: KubeObject, type: "Normal" | "Warning", reason: string, message: string): Promise<void> {
    // Events about cluster-scoped objects live in "default", as kubectl describe expects.
    const namespace = obj.metadata.namespace ?? "default";
    const now = new Date().toISOString();
    try {
      await this.client.create(`/api/v1/namespaces/${namespace}/events`, {
        metadata: { generateName: `${obj.metadata.name}.`, namespace },
        involvedObject: {
          apiVersion: obj.apiVersion,
          kind: obj.kind,
          name: obj.metadata.name,
          namespace: obj.metadata.namespace,
          uid: obj.metadata.uid,
          resourceVersion: obj.metadata.resourceVersion,
        },
        // Policy values and registry text end up here, and kubectl prints Events raw to terminals.
        reason: stripControl(reason, { newlines: false }),
        message: stripControl(message.slice(0, 1024)),
        type,
        source: { component: this.component },
        reportingComponent: this.component,
        reportingInstance: process.env.HOSTNAME ?? "gpuop",
        firstTimestamp: now,
        lastTimestamp: now,
        count: 1,
      }, { discardBody: true });
    } catch (err) {
      this.log.warn("could not record event", { reason, error: (err as Error).message });
    }
  }
}
