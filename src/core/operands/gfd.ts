import { EnvBuilder, hostPath, resources, validationInit, VALIDATIONS_DIR, type OperandContext, type OperandPod, type OperandSpec } from "./common.ts";
import { pluginConfigManager, pluginEnv, withPluginConfig } from "./device-plugin.ts";

/** GPU feature discovery: writes GPU labels for NFD through its features.d directory. */
export function gfdPod(spec: OperandSpec, image: string, ctx: OperandContext): OperandPod {
  const env = new EnvBuilder().set("GFD_SLEEP_INTERVAL", "60s").set("GFD_FAIL_ON_INIT_ERROR", "true");
  pluginEnv(ctx, env);
  const config = pluginConfigManager(ctx, "gpu-feature-discovery", spec.resources);
  if (config) env.set(config.env.name, config.env.value);
  env.setAll(spec.env);
  const res = resources(spec.resources);
  return withPluginConfig({
    withRuntimeClass: true,
    initContainers: [validationInit(ctx, "toolkit")],
    containers: [
      {
        name: "gpu-feature-discovery",
        image,
        imagePullPolicy: spec.imagePullPolicy ?? "IfNotPresent",
        command: ["gpu-feature-discovery"],
        ...(spec.args && spec.args.length > 0 ? { args: [...spec.args] } : {}),
        env: env.list(),
        securityContext: { privileged: true },
        ...(res ? { resources: res } : {}),
        volumeMounts: [
          { name: "output-dir", mountPath: "/etc/kubernetes/node-feature-discovery/features.d" },
          { name: "host-sys", mountPath: "/sys" },
          { name: "run-nvidia-validations", mountPath: VALIDATIONS_DIR },
        ],
      },
    ],
    volumes: [
      hostPath("output-dir", "/etc/kubernetes/node-feature-discovery/features.d"),
      hostPath("host-sys", "/sys"),
      hostPath("run-nvidia-validations", VALIDATIONS_DIR, "DirectoryOrCreate"),
    ],
  }, config);
}
