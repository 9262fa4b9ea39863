import { DRIVER_ROOT, EnvBuilder, hostPath, resources, validationInit, VALIDATIONS_DIR, type Mount, type OperandContext, type OperandPod, type OperandSpec } from "./common.ts";

export type ContainerRuntime = "containerd" | "docker" | "crio";

/** Host paths of each runtime's config, drop-in and socket (NVIDIA's defaults). */
const RUNTIME_FILES: Record<ContainerRuntime, { config: string; dropIn?: string; socket?: string }> = {
  containerd: { config: "/etc/containerd/config.toml", dropIn: "/etc/containerd/conf.d/99-nvidia.toml", socket: "/run/containerd/containerd.sock" },
  docker: { config: "/etc/docker/daemon.json", socket: "/var/run/docker.sock" },
  crio: { config: "/etc/crio/config.toml", dropIn: "/etc/crio/crio.conf.d/99-nvidia.conf" },
};

/** The cluster's runtime from the nodes' `containerRuntimeVersion` (`containerd://2.0.1`); containerd wins, as in NVIDIA's operator. */
export function clusterRuntime(versions: readonly string[]): ContainerRuntime {
  const seen = new Set(versions.map((v) => v.split("://")[0]));
  if (seen.has("containerd") || seen.size === 0) return "containerd";
  if (seen.has("docker")) return "docker";
  if (seen.has("cri-o")) return "crio";
  return "containerd";
}

const dir = (p: string) => p.slice(0, p.lastIndexOf("/")) || "/";
const base = (p: string) => p.slice(p.lastIndexOf("/") + 1);

/**
 * The container toolkit: validates the driver itself (driver-validation init), then installs
 * the NVIDIA runtime into the host's container runtime, rooted at the driver under
 * /run/nvidia/driver (or `/` for a host driver, which the driver-ready file says).
 */
export function toolkitPod(spec: OperandSpec, image: string, ctx: OperandContext, runtime: ContainerRuntime): OperandPod {
  const pullPolicy = spec.imagePullPolicy ?? "IfNotPresent";
  const installDir = typeof spec["installDir"] === "string" && spec["installDir"] !== "" ? spec["installDir"] : "/usr/local/nvidia";
  const files = RUNTIME_FILES[runtime];
  const env = new EnvBuilder()
    .set("ROOT", installDir)
    .set("NVIDIA_CONTAINER_RUNTIME_MODES_CDI_DEFAULT_KIND", "management.nvidia.com/gpu")
    .set("NVIDIA_VISIBLE_DEVICES", "void")
    .set("CDI_ENABLED", "true")
    .set("NVIDIA_RUNTIME_SET_AS_DEFAULT", "false")
    .set("NVIDIA_CONTAINER_RUNTIME_MODE", "cdi");
  if (runtime === "crio") env.set("CRIO_CONFIG_MODE", "config");
  env.setAll(spec.env);
  env.set("RUNTIME", runtime);
  if (runtime === "containerd") env.set("CONTAINERD_RUNTIME_CLASS", ctx.runtimeClass);
  // The runtime's files are host paths; the container sees their directories under /runtime.
  env.set("RUNTIME_CONFIG", `/runtime/config-dir/${base(files.config)}`);
  const mounts: Mount[] = [
    { name: "run-nvidia-toolkit", mountPath: "/run/nvidia/toolkit" },
    { name: "run-nvidia-validations", mountPath: VALIDATIONS_DIR },
    { name: "toolkit-install-dir", mountPath: installDir },
    { name: "driver-install-dir", mountPath: "/driver-root", mountPropagation: "HostToContainer" },
    { name: "host-root", mountPath: "/host", readOnly: true, mountPropagation: "HostToContainer" },
    { name: "cdi-root", mountPath: "/var/run/cdi" },
    { name: "runtime-config-dir", mountPath: "/runtime/config-dir/" },
  ];
  const volumes = [
    hostPath("run-nvidia-toolkit", "/run/nvidia/toolkit"),
    hostPath("run-nvidia-validations", VALIDATIONS_DIR, "DirectoryOrCreate"),
    hostPath("driver-install-dir", DRIVER_ROOT, "DirectoryOrCreate"),
    hostPath("host-root", "/"),
    hostPath("host-dev-char", "/dev/char"),
    hostPath("toolkit-install-dir", installDir),
    hostPath("cdi-root", "/var/run/cdi", "DirectoryOrCreate"),
    hostPath("runtime-config-dir", dir(files.config)),
  ];
  if (files.dropIn) {
    env.set("RUNTIME_DROP_IN_CONFIG", `/runtime/config-dir.d/${base(files.dropIn)}`).set("RUNTIME_DROP_IN_CONFIG_HOST_PATH", files.dropIn);
    mounts.push({ name: "runtime-drop-in-config", mountPath: "/runtime/config-dir.d/" });
    volumes.push(hostPath("runtime-drop-in-config", dir(files.dropIn), "DirectoryOrCreate"));
  }
  if (files.socket) {
    env.set("RUNTIME_SOCKET", `/runtime/sock-dir/${base(files.socket)}`);
    env.set(runtime === "docker" ? "DOCKER_SOCKET" : "CONTAINERD_SOCKET", `/runtime/sock-dir/${base(files.socket)}`);
    mounts.push({ name: "container-runtime-socket", mountPath: "/runtime/sock-dir/" });
    volumes.push(hostPath("container-runtime-socket", dir(files.socket)));
  }
  const res = resources(spec.resources);
  return {
    hostPID: true,
    // The toolkit installs the runtime handler the nvidia RuntimeClass names, so it cannot use it.
    withRuntimeClass: false,
    initContainers: [validationInit(ctx, "driver")],
    containers: [
      {
        name: "nvidia-container-toolkit-ctr",
        image,
        imagePullPolicy: pullPolicy,
        command: ["/bin/bash", "-c"],
        args: [`until [ -f ${VALIDATIONS_DIR}/driver-ready ]; do echo waiting for the driver; sleep 5; done; set -o allexport; . ${VALIDATIONS_DIR}/driver-ready; exec nvidia-toolkit ${(spec.args ?? []).join(" ")}`.trim()],
        env: env.list(),
        securityContext: { privileged: true },
        ...(res ? { resources: res } : {}),
        volumeMounts: mounts,
      },
    ],
    volumes,
  };
}
