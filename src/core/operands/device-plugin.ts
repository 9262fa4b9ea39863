import {
  configRef,
  DRIVER_ROOT,
  EnvBuilder,
  hostPath,
  operandImage,
  operandInfo,
  operandSpec,
  resources,
  validationInit,
  VALIDATIONS_DIR,
  type OperandContainer,
  type OperandContext,
  type OperandPod,
  type OperandSpec,
} from "./common.ts";

/** The node label that picks a node's entry of the device plugin's ConfigMap (NVIDIA's). */
export const DEVICE_PLUGIN_CONFIG_LABEL = "nvidia.com/device-plugin.config";
const CONFIG_FILE = "/config/config.yaml";
const AVAILABLE_CONFIGS = "/available-configs";

/**
 * `devicePlugin.config` (a ConfigMap of plugin configs, one per key, and the default key), as
 * NVIDIA renders it for the device plugin and GFD: the main container reads CONFIG_FILE from a
 * shared emptyDir; `config-manager-init` writes the node's entry there first (the node's
 * `nvidia.com/device-plugin.config` label, else the default); the `config-manager` sidecar
 * rewrites it when the label changes and sends SIGHUP to the main process. Both run the device
 * plugin's image. `undefined` when no ConfigMap is named.
 */
export function pluginConfigManager(ctx: OperandContext, process: "nvidia-device-plugin" | "gpu-feature-discovery", initResources: OperandSpec["resources"]) {
  const config = configRef(ctx.policy, "devicePlugin");
  if (!config) return undefined;
  const plugin = operandSpec(ctx.policy, "devicePlugin");
  const image = operandImage(plugin, operandInfo("devicePlugin"));
  const mounts = [
    { name: "config", mountPath: "/config" },
    { name: config.name, mountPath: AVAILABLE_CONFIGS },
  ];
  const manager = (oneshot: boolean): OperandContainer => {
    const env = new EnvBuilder()
      .set("ONESHOT", String(oneshot))
      .set("KUBECONFIG", "")
      .fieldRef("NODE_NAME", "spec.nodeName")
      .set("NODE_LABEL", DEVICE_PLUGIN_CONFIG_LABEL)
      .set("CONFIG_FILE_SRCDIR", AVAILABLE_CONFIGS)
      .set("CONFIG_FILE_DST", CONFIG_FILE)
      .set("DEFAULT_CONFIG", config.default ?? "")
      .set("SEND_SIGNAL", String(!oneshot))
      .set("SIGNAL", oneshot ? "" : "1")
      .set("PROCESS_TO_SIGNAL", oneshot ? "" : process)
      .set("FALLBACK_STRATEGIES", "empty");
    const res = oneshot ? resources(initResources) : undefined;
    return {
      name: oneshot ? "config-manager-init" : "config-manager",
      image,
      imagePullPolicy: plugin.imagePullPolicy ?? "IfNotPresent",
      command: ["config-manager"],
      env: env.list(),
      ...(oneshot ? {} : { securityContext: { privileged: true } }),
      ...(res ? { resources: res } : {}),
      volumeMounts: mounts.map((m) => ({ ...m })),
    };
  };
  return {
    init: manager(true),
    sidecar: manager(false),
    /** For the main container: its env and mounts. */
    env: { name: "CONFIG_FILE", value: CONFIG_FILE },
    mounts,
    volumes: [
      { name: config.name, configMap: { name: config.name } },
      { name: "config", emptyDir: {} },
    ],
  };
}

/**
 * The pod with the config manager's parts added: its init after the pod's own, its sidecar after
 * the containers, the shared mounts on the main (first) container, and its volumes.
 */
export function withPluginConfig(pod: OperandPod, config: ReturnType<typeof pluginConfigManager>): OperandPod {
  if (!config) return pod;
  const [main, ...rest] = pod.containers;
  return {
    ...pod,
    shareProcessNamespace: true,
    initContainers: [...pod.initContainers, config.init],
    containers: [{ ...main!, volumeMounts: [...(main!.volumeMounts ?? []), ...config.mounts] }, ...rest, config.sidecar],
    volumes: [...pod.volumes, ...config.volumes],
  };
}

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
  const config = pluginConfigManager(ctx, "nvidia-device-plugin", spec.resources);
  if (config) env.set(config.env.name, config.env.value);
  const installDir = ctx.policy.spec?.["toolkit"] as { installDir?: unknown } | undefined;
  env
    .set("CDI_ENABLED", "true")
    .set("DEVICE_LIST_STRATEGY", "cdi-annotations,cdi-cri")
    .set("CDI_ANNOTATION_PREFIX", "cdi.k8s.io/")
    .set("NVIDIA_CDI_HOOK_PATH", `${typeof installDir?.installDir === "string" ? installDir.installDir : "/usr/local/nvidia"}/toolkit/nvidia-cdi-hook`);
  env.setAll(spec.env);
  const res = resources(spec.resources);
  return withPluginConfig({
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
  }, config);
}
