// Server-side request counts: the API server's audit log at Metadata level,
// limited to the operator's own ServiceAccount, so both operators are counted
// the same way whatever their clients count themselves.
import { readFileSync, writeFileSync } from "node:fs";

/** The user every benchmarked operator runs as; the audit policy logs only its requests. */
export const OPERATOR_SA = { namespace: "gpu-operator", name: "bench-operator" };
export const OPERATOR_USER = `system:serviceaccount:${OPERATOR_SA.namespace}:${OPERATOR_SA.name}`;

/** Writes the audit policy and returns the kube-apiserver arguments (kwokctl `--extra-args`) that turn it on. */
export function auditArgs(policyFile: string, logFile: string): string[] {
  writeFileSync(
    policyFile,
    JSON.stringify({
      apiVersion: "audit.k8s.io/v1",
      kind: "Policy",
      // One event per request, written when it completes (a watch: when it ends).
      omitStages: ["RequestReceived", "ResponseStarted"],
      rules: [
        { level: "Metadata", users: [OPERATOR_USER] },
        { level: "None" },
      ],
    }),
  );
  return [
    `kube-apiserver=audit-policy-file=${policyFile}`,
    `kube-apiserver=audit-log-path=${logFile}`,
    "kube-apiserver=audit-log-format=json",
    "kube-apiserver=audit-log-maxbackup=0",
    "kube-apiserver=audit-log-maxsize=0",
  ];
}

export interface AuditEvent {
  verb: string;
  userAgent: string;
  /** Milliseconds since the epoch. */
  at: number;
  resource: string;
}

/** Reads every complete event the log holds so far. */
export function readAudit(logFile: string): AuditEvent[] {
  let text: string;
  try {
    text = readFileSync(logFile, "utf8");
  } catch {
    return [];
  }
  const events: AuditEvent[] = [];
  for (const line of text.split("\n")) {
    if (!line.startsWith("{")) continue;
    try {
      const e = JSON.parse(line) as { verb: string; userAgent?: string; requestReceivedTimestamp: string; objectRef?: { resource?: string; subresource?: string } };
      events.push({
        verb: e.verb,
        userAgent: e.userAgent ?? "",
        at: Date.parse(e.requestReceivedTimestamp),
        resource: [e.objectRef?.resource, e.objectRef?.subresource].filter(Boolean).join("/"),
      });
    } catch {
      // The last line may be half written.
    }
  }
  return events;
}

export const WRITE_VERBS = new Set(["create", "update", "patch", "delete", "deletecollection"]);

export interface RequestCounts {
  total: number;
  writes: number;
  /** Requests other than watches (a watch that lasts is one long request, not load). */
  nonWatch: number;
  byVerb: Record<string, number>;
  userAgents: string[];
}

/** Requests received in [from, to) (epoch milliseconds). */
export function countRequests(events: AuditEvent[], from: number, to: number): RequestCounts {
  const byVerb: Record<string, number> = {};
  const agents = new Set<string>();
  let total = 0;
  let writes = 0;
  let nonWatch = 0;
  for (const e of events) {
    if (e.at < from || e.at >= to) continue;
    total++;
    byVerb[e.verb] = (byVerb[e.verb] ?? 0) + 1;
    agents.add(e.userAgent.split(" ")[0] ?? "");
    if (WRITE_VERBS.has(e.verb)) writes++;
    if (e.verb !== "watch") nonWatch++;
  }
  return { total, writes, nonWatch, byVerb, userAgents: [...agents] };
}
