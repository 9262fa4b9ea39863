import { UserError } from "../errors.ts";
import { configRef, EnvBuilder, hostPath, resources, validationInit, VALIDATIONS_DIR, type OperandContext, type OperandInfo, type OperandPod, type OperandService, type OperandSpec, type OwnerRef, OPERAND_LABEL } from "./common.ts";

export const DCGM_EXPORTER_PORT = 9400;
const METRICS_CONFIG_FILE = "dcgm-metrics.csv";
const METRICS_CONFIG_PATH = `/etc/dcgm-exporter/${METRICS_CONFIG_FILE}`;

/**
 * The DCGM exporter with its embedded host engine (gpuop does not deploy the standalone
 * `dcgm` operand, so no DCGM_REMOTE_HOSTENGINE_INFO).
 */
export function dcgmExporterPod(spec: OperandSpec, image: string, ctx: OperandContext): OperandPod {
  const env = new EnvBuilder()
    .set("DCGM_EXPORTER_LISTEN", `:${DCGM_EXPORTER_PORT}`)
    .set("DCGM_EXPORTER_KUBERNETES", "true")
    .set("DCGM_EXPORTER_COLLECTORS", "/etc/dcgm-exporter/dcp-metrics-included.csv");
  // dcgmExporter.config.name: the ConfigMap's dcgm-metrics.csv replaces the metrics collected (NVIDIA's mount and env).
  const metrics = configRef(ctx.policy, "dcgmExporter");
  if (metrics) env.set("DCGM_EXPORTER_COLLECTORS", METRICS_CONFIG_PATH);
  env.setAll(spec.env);
  const res = resources(spec.resources);
  return {
    withRuntimeClass: true,
    initContainers: [validationInit(ctx, "toolkit")],
    containers: [
      {
        name: "nvidia-dcgm-exporter",
        image,
        imagePullPolicy: spec.imagePullPolicy ?? "IfNotPresent",
        ...(spec.args && spec.args.length > 0 ? { args: [...spec.args] } : {}),
        env: env.list(),
        securityContext: { privileged: true },
        ...(res ? { resources: res } : {}),
        ports: [{ name: "metrics", containerPort: DCGM_EXPORTER_PORT, protocol: "TCP" }],
        volumeMounts: [
          { name: "pod-gpu-resources", mountPath: "/var/lib/kubelet/pod-resources", readOnly: true },
          { name: "run-nvidia-validations", mountPath: VALIDATIONS_DIR },
          ...(metrics ? [{ name: "metrics-config", mountPath: METRICS_CONFIG_PATH, subPath: METRICS_CONFIG_FILE, readOnly: true }] : []),
        ],
      },
    ],
    volumes: [
      hostPath("pod-gpu-resources", "/var/lib/kubelet/pod-resources"),
      hostPath("run-nvidia-validations", VALIDATIONS_DIR, "DirectoryOrCreate"),
      ...(metrics ? [{ name: "metrics-config", configMap: { name: metrics.name, items: [{ key: METRICS_CONFIG_FILE, path: METRICS_CONFIG_FILE }] } }] : []),
    ],
  };
}

/** NVIDIA's `nvidia-dcgm-exporter` Service: port `gpu-metrics`, scraped by Prometheus. */
export function dcgmExporterService(info: OperandInfo, spec: OperandSpec, namespace: string, owner: OwnerRef | undefined): OperandService {
  const service = spec["service"] as { type?: unknown; internalTrafficPolicy?: unknown } | undefined;
  const traffic = service?.internalTrafficPolicy;
  if (traffic !== undefined && traffic !== "Cluster" && traffic !== "Local") throw new UserError(`spec.dcgmExporter.service.internalTrafficPolicy must be Cluster or Local, not ${JSON.stringify(traffic)}`);
  return {
    apiVersion: "v1",
    kind: "Service",
    metadata: {
      name: info.name,
      namespace,
      labels: { app: info.name, [OPERAND_LABEL]: info.key },
      annotations: { "prometheus.io/scrape": "true" },
      ...(owner ? { ownerReferences: [{ ...owner, controller: true, blockOwnerDeletion: true }] } : {}),
    },
    spec: {
      selector: { app: info.name },
      type: typeof service?.type === "string" && service.type !== "" ? service.type : "ClusterIP",
      ...(traffic ? { internalTrafficPolicy: traffic } : {}),
      ports: [{ name: "gpu-metrics", port: DCGM_EXPORTER_PORT, targetPort: DCGM_EXPORTER_PORT, protocol: "TCP" }],
    },
  };
}
