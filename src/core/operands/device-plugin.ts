import { DRIVER_ROOT, EnvBuilder, hostPath, resources, validationInit, VALIDATIONS_DIR, type OperandContext, type OperandPod, type OperandSpec } from "./common.ts";

/** The MIG strategy NVIDIA's chart sets (`mig.strategy`, default single). */
export function migStrategy(ctx: OperandContext): string {
  const mig = ctx.policy.spec?.["mig"] as { strategy?: unknown } | undefined;
  return typeof mig?.strategy === "string" && mig.strategy !== "" ? mig.strategy : "single";
}

/** The env the device plugin and GFD share: MIG strategy and, with CDI, how devices are named. */
export function pluginEnv(ctx: OperandContext, env: EnvBuilder): EnvBuilder {
  const strategy = migStrategy(ctx);
  env.set("MIG_STRATEGY", strategy);
  if (strategy !== "none") env.set("NVIDIA_MIG_MONITOR_DEVICES", "all");
  return env;
}

/**
 * The device plugin: advertises `nvidia.com/gpu` to the kubelet. Waits for toolkit-ready (the
 * toolkit-validation init) and for driver-ready in its entrypoint, as NVIDIA's image expects.
 */
export function devicePluginPod(spec: OperandSpec, image: string, ctx: OperandContext): OperandPod {
  const env = new EnvBuilder()
    .set("PASS_DEVICE_SPECS", "true")
    .set("FAIL_ON_INIT_ERROR", "true")
    .set("DEVICE_LIST_STRATEGY", "envvar")
    .set("DEVICE_ID_STRATEGY", "uuid")
    .set("NVIDIA_VISIBLE_DEVICES", "all")
    .set("NVIDIA_DRIVER_CAPABILITIES", "all")
    .set("MPS_ROOT", "/run/nvidia/mps");
  pluginEnv(ctx, env);
  const installDir = ctx.policy.spec?.["toolkit"] as { installDir?: unknown } | undefined;
  env
    .set("CDI_ENABLED", "true")
    .set("DEVICE_LIST_STRATEGY", "cdi-annotations,cdi-cri")
    .set("CDI_ANNOTATION_PREFIX", "cdi.k8s.io/")
    .set("NVIDIA_CDI_HOOK_PATH", `${typeof installDir?.installDir === "string" ? installDir.installDir : "/usr/local/nvidia"}/toolkit/nvidia-cdi-hook`);
  env.setAll(spec.env);
  const res = resources(spec.resources);
  return {
    withRuntimeClass: true,
    initContainers: [validationInit(ctx, "toolkit")],
    containers: [
      {
        name: "nvidia-device-plugin",
        image,
        imagePullPolicy: spec.imagePullPolicy ?? "IfNotPresent",
        command: ["/bin/bash", "-c"],
        args: [`until [ -f ${VALIDATIONS_DIR}/driver-ready ]; do echo waiting for the driver; sleep 5; done; set -o allexport; . ${VALIDATIONS_DIR}/driver-ready; exec nvidia-device-plugin ${(spec.args ?? []).join(" ")}`.trim()],
        env: env.list(),
        securityContext: { privileged: true },
        ...(res ? { resources: res } : {}),
        volumeMounts: [
          { name: "device-plugin", mountPath: "/var/lib/kubelet/device-plugins" },
          { name: "run-nvidia-validations", mountPath: VALIDATIONS_DIR },
          { name: "driver-install-dir", mountPath: "/driver-root", readOnly: true, mountPropagation: "HostToContainer" },
          { name: "host-root", mountPath: "/host", readOnly: true, mountPropagation: "HostToContainer" },
          { name: "cdi-root", mountPath: "/var/run/cdi" },
          { name: "mps-root", mountPath: "/mps" },
          { name: "mps-shm", mountPath: "/dev/shm" },
        ],
      },
    ],
    volumes: [
      hostPath("device-plugin", "/var/lib/kubelet/device-plugins"),
      hostPath("run-nvidia-validations", VALIDATIONS_DIR, "DirectoryOrCreate"),
      hostPath("driver-install-dir", DRIVER_ROOT, "DirectoryOrCreate"),
      hostPath("host-root", "/"),
      hostPath("cdi-root", "/var/run/cdi", "DirectoryOrCreate"),
      hostPath("mps-root", "/run/nvidia/mps", "DirectoryOrCreate"),
      hostPath("mps-shm", "/run/nvidia/mps/shm"),
    ],
  };
}
