import { stripControl } from "../core/security.ts";
import type { KubeClient } from "./client.ts";
import type { Logger } from "./log.ts";
import type { KubeObject } from "./types.ts";

/**
 * Records core/v1 Events about an object. Callers emit on transitions only, so
 * a steady state writes nothing.
 */
export class EventRecorder {
  private readonly client: KubeClient;
  private readonly component: string;
  private readonly log: Logger;

  constructor(client: KubeClient, component: string, log: Logger) {
    this.client = client;
    this.component = component;
    this.log = log;
  }

  async record(obj: KubeObject, type: "Normal" | "Warning", reason: string, message: string): Promise<void> {
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
      });
    } catch (err) {
      this.log.warn("could not record event", { reason, error: (err as Error).message });
    }
  }
}
