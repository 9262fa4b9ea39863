import { EnvBuilder, hostPath, resources, validationInit, VALIDATIONS_DIR, type OperandContext, type OperandInfo, type OperandPod, type OperandService, type OperandSpec, type OwnerRef, OPERAND_LABEL } from "./common.ts";

export const DCGM_EXPORTER_PORT = 9400;

/**
 * The DCGM exporter with its embedded host engine (gpuop does not deploy the standalone
 * `dcgm` operand, so no DCGM_REMOTE_HOSTENGINE_INFO).
 */
export function dcgmExporterPod(spec: OperandSpec, image: string, ctx: OperandContext): OperandPod {
  const env = new EnvBuilder()
    .set("DCGM_EXPORTER_LISTEN", `:${DCGM_EXPORTER_PORT}`)
    .set("DCGM_EXPORTER_KUBERNETES", "true")
    .set("DCGM_EXPORTER_COLLECTORS", "/etc/dcgm-exporter/dcp-metrics-included.csv");
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
        ],
      },
    ],
    volumes: [hostPath("pod-gpu-resources", "/var/lib/kubelet/pod-resources"), hostPath("run-nvidia-validations", VALIDATIONS_DIR, "DirectoryOrCreate")],
  };
}

/** NVIDIA's `nvidia-dcgm-exporter` Service: port `gpu-metrics`, scraped by Prometheus. */
export function dcgmExporterService(info: OperandInfo, spec: OperandSpec, namespace: string, owner: OwnerRef | undefined): OperandService {
  const service = spec["service"] as { type?: unknown } | undefined;
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
      ports: [{ name: "gpu-metrics", port: DCGM_EXPORTER_PORT, targetPort: DCGM_EXPORTER_PORT, protocol: "TCP" }],
    },
  };
}
