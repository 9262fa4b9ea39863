import { EnvBuilder, hostPath, DRIVER_ROOT, resources, validationInit, VALIDATIONS_DIR, type OperandContext, type OperandPod, type OperandSpec } from "./common.ts";
import { migStrategy } from "./device-plugin.ts";

/**
 * The operator validator: its inits check the driver, the toolkit (and so write toolkit-ready,
 * which the device plugin, GFD and exporter wait on), CUDA and the plugin, in NVIDIA's order.
 */
export function validatorPod(spec: OperandSpec, image: string, ctx: OperandContext): OperandPod {
  const pullPolicy = spec.imagePullPolicy ?? "IfNotPresent";
  const workload = [
    { name: "VALIDATOR_IMAGE", value: image },
    { name: "VALIDATOR_IMAGE_PULL_POLICY", value: pullPolicy },
    { name: "VALIDATOR_RUNTIME_CLASS", value: ctx.runtimeClass },
  ];
  const inits = [validationInit(ctx, "driver"), validationInit(ctx, "toolkit", [{ name: "NVIDIA_VISIBLE_DEVICES", value: "all" }]), validationInit(ctx, "cuda", workload)];
  if (ctx.enabled.has("devicePlugin")) {
    inits.push(validationInit(ctx, "plugin", [{ name: "WITH_WORKLOAD", value: "false" }, { name: "MIG_STRATEGY", value: migStrategy(ctx) }, ...workload]));
  }
  for (const init of inits) {
    init.image = image;
    init.imagePullPolicy = pullPolicy;
  }
  const env = new EnvBuilder().fieldRef("NODE_NAME", "spec.nodeName").fieldRef("OPERATOR_NAMESPACE", "metadata.namespace");
  env.setAll(spec.env);
  const res = resources(spec.resources);
  return {
    withRuntimeClass: true,
    initContainers: inits,
    containers: [
      {
        name: "nvidia-operator-validator",
        image,
        imagePullPolicy: pullPolicy,
        command: ["sh", "-c"],
        args: ["echo all validations are successful; sleep infinity"],
        env: env.list(),
        securityContext: { privileged: true },
        ...(res ? { resources: res } : {}),
        // The files go with the pod, so a restarted validator checks everything again.
        lifecycle: { preStop: { exec: { command: ["sh", "-c", `rm -f ${VALIDATIONS_DIR}/*-ready`] } } },
        volumeMounts: [{ name: "run-nvidia-validations", mountPath: VALIDATIONS_DIR, mountPropagation: "Bidirectional" }],
      },
    ],
    volumes: [
      hostPath("run-nvidia-validations", VALIDATIONS_DIR, "DirectoryOrCreate"),
      hostPath("driver-install-dir", DRIVER_ROOT, "DirectoryOrCreate"),
      hostPath("host-root", "/"),
      hostPath("host-dev-char", "/dev/char"),
    ],
  };
}
