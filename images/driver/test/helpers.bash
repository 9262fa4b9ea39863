# shellcheck shell=bash
# shellcheck disable=SC2034 # the .bats files use these variables
# Shared setup for the driver container's bats tests: a fake root under the
# test's temp dir, the real scripts, and recording stubs on PATH for every
# command that would touch the host.

COMMON=$(cd "${BATS_TEST_DIRNAME}/../common" && pwd)
# The scripts as the image runs them take no paths from the environment;
# these wrappers run them against $ROOT (see fake-root/run).
DRIVER=${BATS_TEST_DIRNAME}/fake-root/nvidia-driver
PROBE=${BATS_TEST_DIRNAME}/fake-root/nvidia-driver-probe
KERNEL=5.15.0-69-generic
STUBBED=(uname modprobe rmmod nvidia-smi nvidia-persistenced nv-fabricmanager nvidia-fabricmanager-start.sh mount umount apt-get depmod chroot)

setup_fake_root() {
  export ROOT=${BATS_TEST_TMPDIR}/root
  # For the stubs and the tests; the scripts derive theirs from ROOT.
  export SYSFS_ROOT=${ROOT}/sys PROC_ROOT=${ROOT}/proc RUN_DIR=${ROOT}/run/nvidia
  export PERSISTENCED_PID_FILE=${ROOT}/var/run/nvidia-persistenced/nvidia-persistenced.pid
  export FABRICMANAGER_PID_FILE=${ROOT}/var/run/nvidia-fabricmanager/nv-fabricmanager.pid
  export NVLSM_PID_FILE=${ROOT}/var/run/nvidia-fabricmanager/nvlsm.pid
  export STUB_LOG=${BATS_TEST_TMPDIR}/calls STUB_UNAME_R=${KERNEL} DAEMON_STOP_TIMEOUT=5
  unset GPU_DIRECT_RDMA_ENABLED KERNEL_MODULE_TYPE USE_HOST_MOFED
  mkdir -p "${ROOT}"/{etc/gpuop/packages,drivers,proc/self,run/nvidia,sys/bus/pci/devices}
  mkdir -p "${SYSFS_ROOT}/module/firmware_class/parameters"
  : >"${SYSFS_ROOT}/module/firmware_class/parameters/path"
  : >"${PROC_ROOT}/self/mounts"
  : >"$STUB_LOG"
  image_info kernel-version "$KERNEL"
  image_info driver-branch 535
  image_info driver-version 535.183.01
  image_info os-tag ubuntu22.04
  image_info module-types proprietary
  image_info packages/userspace "$(printf '%s\n' nvidia-utils-535-server libnvidia-gl-535-server)"
  image_info packages/proprietary "$(printf '%s\n' linux-objects-nvidia-535-server-${KERNEL} linux-modules-nvidia-535-server-${KERNEL})"
  image_info packages/open "linux-modules-nvidia-535-server-open-${KERNEL}"
  image_info packages/nvswitch "$(printf '%s\n' nvidia-fabricmanager-535 libnvidia-nscq-535)"
  image_info packages/nvlink5 ""
  local bin=${BATS_TEST_TMPDIR}/bin name
  mkdir -p "$bin"
  for name in "${STUBBED[@]}"; do ln -sf "${BATS_TEST_DIRNAME}/stubs/stub" "${bin}/${name}"; done
  export PATH=${bin}:${PATH}
}

image_info() { echo "$2" >"${ROOT}/etc/gpuop/$1"; }

# A module already loaded on the fake node, with its holders.
loaded_module() { # name refcnt [holder...]
  local dir=${SYSFS_ROOT}/module/$1 h
  mkdir -p "${dir}/holders"
  echo "$2" >"${dir}/refcnt"
  for h in "${@:3}"; do ln -s "../../${h}" "${dir}/holders/${h}"; done
}

# A PCI device on the fake node.
pci_device() { # address vendor class [device]
  local dir=${SYSFS_ROOT}/bus/pci/devices/$1
  mkdir -p "$dir"
  echo "$2" >"${dir}/vendor"
  echo "$3" >"${dir}/class"
  echo "${4:-0x0000}" >"${dir}/device"
}

# A process on the fake node with a GPU device open.
gpu_user() { # pid comm device
  mkdir -p "${PROC_ROOT}/$1/fd"
  echo "$2" >"${PROC_ROOT}/$1/comm"
  ln -s "$3" "${PROC_ROOT}/$1/fd/3"
}

calls() { cat "$STUB_LOG"; }

# Starts an nvidia-driver command in the background; its output goes to
# $INIT_OUT, its pid to $INIT_PID.
start_command() {
  INIT_OUT=${BATS_TEST_TMPDIR}/init.out
  "$DRIVER" "$1" >"$INIT_OUT" 2>&1 3>&- &
  INIT_PID=$!
}

# Waits until the background command has printed a line with this text.
wait_for_output() {
  local i
  for ((i = 0; i < 200; i++)); do
    grep -qF "$1" "$INIT_OUT" && return 0
    kill -0 "$INIT_PID" 2>/dev/null || break
    sleep 0.05
  done
  grep -qF "$1" "$INIT_OUT" && return 0
  echo "nvidia-driver never printed \"$1\":" >&2
  cat "$INIT_OUT" >&2
  return 1
}

start_driver_background() { start_command init; }

# Starts `nvidia-driver init` in the background and waits until it is ready
# (or has exited).
start_driver() {
  start_command init
  wait_ready
}

wait_ready() {
  local i
  for ((i = 0; i < 200; i++)); do
    [[ -e ${RUN_DIR}/validations/.driver-ctr-ready ]] && return 0
    kill -0 "$INIT_PID" 2>/dev/null || break
    sleep 0.05
  done
  echo "nvidia-driver init did not become ready:" >&2
  cat "$INIT_OUT" >&2
  return 1
}

# Sends SIGTERM to the running driver and sets $status to its exit status.
stop_driver() {
  kill -TERM "$INIT_PID"
  status=0
  wait "$INIT_PID" || status=$?
  INIT_PID=
}

teardown_fake_root() {
  local f
  if [[ -n ${INIT_PID:-} ]]; then kill -KILL "$INIT_PID" 2>/dev/null || true; fi
  for f in "$PERSISTENCED_PID_FILE" "$FABRICMANAGER_PID_FILE" "$NVLSM_PID_FILE"; do
    if [[ -f $f ]]; then kill "$(<"$f")" 2>/dev/null || true; fi
  done
}

# Fails when the command succeeds (a bare `!` does not fail a bats test).
not() {
  if "$@"; then
    echo "expected this to fail: $*" >&2
    return 1
  fi
}
