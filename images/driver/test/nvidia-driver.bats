#!/usr/bin/env bats
# shellcheck disable=SC2030,SC2031 # each test exports into its own subshell on purpose
# nvidia-driver init against a fake root, with recording stubs for every
# command that would touch the host.

load helpers

setup() { setup_fake_root; }
teardown() { teardown_fake_root; }

@test "init installs, mounts, loads and starts in order; SIGTERM undoes it in reverse" {
  start_driver
  grep -q 'driver ready' "$INIT_OUT"
  [ "$(cat "${RUN_DIR}/nvidia-driver.pid")" = "$INIT_PID" ]
  [ "$(cat "${SYSFS_ROOT}/module/firmware_class/parameters/path")" = /run/nvidia/driver/lib/firmware ]
  daemon=$(cat "$PERSISTENCED_PID_FILE")
  kill -0 "$daemon"

  stop_driver
  [ "$status" -eq 0 ]
  diff -u - "$STUB_LOG" <<CALLS
uname -r
apt-get install -y --no-install-recommends nvidia-utils-535-server libnvidia-gl-535-server linux-objects-nvidia-535-server-${KERNEL} linux-modules-nvidia-535-server-${KERNEL}
depmod -a ${KERNEL}
mount --make-runbindable ${SYSFS_ROOT}
mount --make-private ${SYSFS_ROOT}
mount --rbind ${ROOT} ${RUN_DIR}/driver
modprobe -a i2c_core ipmi_msghandler ipmi_devintf
modprobe nvidia
modprobe nvidia-uvm
modprobe nvidia-modeset
nvidia-persistenced --persistence-mode
nvidia-smi
rmmod nvidia_modeset
rmmod nvidia_uvm
rmmod nvidia
umount -l -R ${RUN_DIR}/driver
CALLS
  not kill -0 "$daemon" 2>/dev/null
  [ ! -e "${RUN_DIR}/nvidia-driver.pid" ]
  [ ! -e "${RUN_DIR}/validations/.driver-ctr-ready" ]
  [ ! -e "${SYSFS_ROOT}/module/nvidia" ]
  [ ! -s "${PROC_ROOT}/self/mounts" ]
}

@test "init replaces a loaded driver: stops the old daemon, unmounts, unloads dependents first" {
  loaded_module nvidia 3 nvidia_uvm nvidia_modeset nvidia_drm
  loaded_module nvidia_uvm 0
  loaded_module nvidia_modeset 1 nvidia_drm
  loaded_module nvidia_drm 0
  echo "/ ${RUN_DIR}/driver none rw 0 0" >"${PROC_ROOT}/self/mounts"
  mkdir -p "${PERSISTENCED_PID_FILE%/*}"
  sleep 300 3>&- &
  old_daemon=$!
  echo "$old_daemon" >"$PERSISTENCED_PID_FILE"

  start_driver
  not kill -0 "$old_daemon" 2>/dev/null
  grep -q "stopping nvidia-persistenced (pid ${old_daemon})" "$INIT_OUT"
  calls | sed -n '2,5p' | diff -u - <(printf '%s\n' "rmmod nvidia_drm" "rmmod nvidia_modeset" "rmmod nvidia_uvm" "rmmod nvidia")
  calls | grep -n . | grep -q "^8:umount -l -R ${RUN_DIR}/driver$"
  calls | grep -n . | grep -q "^11:mount --rbind"
  stop_driver
  [ "$status" -eq 0 ]
}

@test "init refuses a node whose kernel is not the image's, naming both kernels" {
  export STUB_UNAME_R=6.8.0-1047-oracle
  loaded_module nvidia 0
  run "$DRIVER" init
  [ "$status" -eq 1 ]
  [[ $output == *"built for kernel ${KERNEL} but this node runs kernel 6.8.0-1047-oracle"* ]]
  [[ $output == *"535-6.8.0-1047-oracle-ubuntu22.04"* ]]
  [[ $output == *"gpuop precompiled build --kernel 6.8.0-1047-oracle --branch 535"* ]]
  [ "$(calls)" = "uname -r" ]
  [ ! -e "${RUN_DIR}/nvidia-driver.pid" ]
}

@test "init refuses to unload a driver in use and shows what holds it" {
  loaded_module nvidia 3 nvidia_uvm nvidia_modeset
  loaded_module nvidia_uvm 0
  loaded_module nvidia_modeset 0
  gpu_user 4242 python3 /dev/nvidia0
  gpu_user 4343 bash /dev/null
  run "$DRIVER" init
  [ "$status" -eq 1 ]
  [[ $output == *"the NVIDIA driver is in use"* ]]
  [[ $output == *"module nvidia: refcnt 3, held by modules: nvidia_modeset nvidia_uvm"* ]]
  [[ $output == *"process 4242 (python3) has /dev/nvidia0 open"* ]]
  [[ $output != *"4343"* ]]
  [[ $output == *"stop the GPU workloads on this node"* ]]
  not grep -q '^rmmod\|^modprobe\|^mount' "$STUB_LOG"
  [ -e "${SYSFS_ROOT}/module/nvidia" ]
}

@test "a module held by a module that is not the driver's counts as in use" {
  loaded_module nvidia 1 gdrdrv
  run "$DRIVER" init
  [ "$status" -eq 1 ]
  [[ $output == *"module nvidia: refcnt 1, held by modules: gdrdrv"* ]]
  not grep -q '^rmmod' "$STUB_LOG"
}

@test "module parameters from /drivers/*.conf land in modprobe.d before any module loads" {
  printf 'NVreg_EnableGpuFirmware=0\n# a comment\n\n  NVreg_RegistryDwords="RMA=1;RMB=2"\n' >"${ROOT}/drivers/nvidia.conf"
  printf 'uvm_perf_prefetch_enable=0' >"${ROOT}/drivers/nvidia-uvm.conf"
  mkdir -p "${ROOT}/etc/modprobe.d"
  echo "options nvidia_modeset stale=1" >"${ROOT}/etc/modprobe.d/gpuop-nvidia-modeset.conf"
  start_driver
  diff -u - "${ROOT}/etc/modprobe.d/gpuop-nvidia.conf" <<'EOF2'
options nvidia NVreg_EnableGpuFirmware=0
options nvidia NVreg_RegistryDwords="RMA=1;RMB=2"
EOF2
  [ "$(cat "${ROOT}/etc/modprobe.d/gpuop-nvidia-uvm.conf")" = "options nvidia_uvm uvm_perf_prefetch_enable=0" ]
  [ ! -e "${ROOT}/etc/modprobe.d/gpuop-nvidia-modeset.conf" ]
  [ ! -e "${ROOT}/etc/modprobe.d/gpuop-nvidia-peermem.conf" ]
  stop_driver
}

@test "a malformed module parameter stops init, naming the file and line" {
  printf 'NVreg_EnableGpuFirmware=0\nnot a parameter\n' >"${ROOT}/drivers/nvidia.conf"
  run "$DRIVER" init
  [ "$status" -eq 1 ]
  [[ $output == *"${ROOT}/drivers/nvidia.conf:2: \"not a parameter\" is not a module parameter"* ]]
  not grep -q '^modprobe' "$STUB_LOG"
}

@test "GPUDirect RDMA with a Mellanox device loads nvidia-peermem, and unloads it before nvidia" {
  export GPU_DIRECT_RDMA_ENABLED=true
  pci_device 0000:3b:00.0 0x15b3 0x020700
  start_driver
  calls | grep '^modprobe' | diff -u - <(printf 'modprobe %s\n' '-a i2c_core ipmi_msghandler ipmi_devintf' nvidia nvidia-uvm nvidia-modeset nvidia-peermem)
  stop_driver
  [ "$status" -eq 0 ]
  calls | grep '^rmmod' | diff -u - <(printf 'rmmod %s\n' nvidia_modeset nvidia_uvm nvidia_peermem nvidia)
}

@test "GPUDirect RDMA without a Mellanox device skips nvidia-peermem with a warning" {
  export GPU_DIRECT_RDMA_ENABLED=true
  pci_device 0000:17:00.0 0x10de 0x030200
  start_driver
  not grep -q 'modprobe nvidia-peermem' "$STUB_LOG"
  grep -q 'no Mellanox device (PCI vendor 15b3)' "$INIT_OUT"
  stop_driver
}

@test "nvidia-peermem stays unloaded when GPUDirect RDMA is off, even with a Mellanox device" {
  pci_device 0000:3b:00.0 0x15b3 0x020700
  start_driver
  not grep -q 'peermem' "$STUB_LOG"
  stop_driver
}

@test "a second init refuses while a live process holds the lock, naming it" {
  exec 8>>"${RUN_DIR}/nvidia-driver.pid"
  flock -n 8
  echo 4242 >"${RUN_DIR}/nvidia-driver.pid"
  run "$DRIVER" init
  exec 8>&-
  [ "$status" -eq 1 ]
  [[ $output == *"another nvidia-driver (pid 4242) holds ${RUN_DIR}/nvidia-driver.pid"* ]]
  [ "$(cat "${RUN_DIR}/nvidia-driver.pid")" = 4242 ]
  [ "$(calls)" = "uname -r" ]
}

@test "a pid file left by a dead driver does not block init" {
  echo 999999 >"${RUN_DIR}/nvidia-driver.pid"
  start_driver
  [ "$(cat "${RUN_DIR}/nvidia-driver.pid")" = "$INIT_PID" ]
  stop_driver
  [ "$status" -eq 0 ]
}

@test "NVSwitch systems get nv-fabricmanager, stopped before nvidia-persistenced on shutdown" {
  pci_device 0000:05:00.0 0x10de 0x068000
  start_driver
  fm=$(cat "$FABRICMANAGER_PID_FILE")
  calls | grep -q "^apt-get install .* linux-modules-nvidia-535-server-${KERNEL} nvidia-fabricmanager-535 libnvidia-nscq-535$"
  calls | grep -q "^nv-fabricmanager -c ${ROOT}/usr/share/nvidia/nvswitch/fabricmanager.cfg$"
  stop_driver
  [ "$status" -eq 0 ]
  not kill -0 "$fm" 2>/dev/null
  fm_line=$(grep -n 'stopping nv-fabricmanager' "$INIT_OUT" | cut -d: -f1)
  pd_line=$(grep -n 'stopping nvidia-persistenced' "$INIT_OUT" | cut -d: -f1)
  [ "$fm_line" -lt "$pd_line" ]
}

@test "KERNEL_MODULE_TYPE picks open or proprietary modules from those in the image" {
  image_info module-types "proprietary open"
  export KERNEL_MODULE_TYPE=open
  start_driver
  calls | grep -q "^apt-get install -y --no-install-recommends nvidia-utils-535-server libnvidia-gl-535-server linux-modules-nvidia-535-server-open-${KERNEL}$"
  stop_driver
}

@test "KERNEL_MODULE_TYPE=auto prefers open modules from branch 560 on" {
  image_info module-types "proprietary open"
  image_info driver-branch 570
  image_info driver-version ""
  image_info packages/open "linux-modules-nvidia-570-server-open-${KERNEL}"
  start_driver
  calls | grep -q "^apt-get install .* linux-modules-nvidia-570-server-open-${KERNEL}$"
  stop_driver
}

@test "asking for a module type the image lacks says how to fix it" {
  export KERNEL_MODULE_TYPE=open
  run "$DRIVER" init
  [ "$status" -eq 1 ]
  [[ $output == *"KERNEL_MODULE_TYPE=open but this image has only proprietary modules"* ]]
  not grep -q '^apt-get\|^modprobe' "$STUB_LOG"
}

@test "a loaded module of another driver release than the image's user space stops init" {
  export STUB_NVIDIA_VERSION=535.104.05
  run "$DRIVER" init
  [ "$status" -eq 1 ]
  [[ $output == *"loaded nvidia module is version 535.104.05 but this image's user-space driver is 535.183.01"* ]]
}

@test "SIGTERM while the driver is in use leaves it loaded, unmounts, and fails" {
  start_driver
  gpu_user 4242 python3 /dev/nvidia-uvm
  stop_driver
  [ "$status" -eq 1 ]
  grep -q 'process 4242 (python3) has /dev/nvidia-uvm open' "$INIT_OUT"
  not grep -q '^rmmod' "$STUB_LOG"
  calls | tail -n1 | grep -q "^umount -l -R ${RUN_DIR}/driver$"
  [ ! -e "${RUN_DIR}/nvidia-driver.pid" ]
}

@test "a node without NVSwitch installs no fabric manager" {
  start_driver
  not grep -q 'fabricmanager' "$STUB_LOG"
  stop_driver
}

# An NVLink5 system: an InfiniBand port of the NVLink switch tray (SW_MNG in its VPD).
nvlink5_node() {
  mkdir -p "${SYSFS_ROOT}/class/infiniband/mlx5_0/device"
  printf 'PN MCX750500B\nV0 SW_MNG\n' >"${SYSFS_ROOT}/class/infiniband/mlx5_0/device/vpd"
  image_info driver-branch 580
  image_info driver-version 580.95.05
  image_info packages/userspace nvidia-utils-580-server
  image_info packages/proprietary "linux-modules-nvidia-580-server-${KERNEL}"
  image_info packages/open "linux-modules-nvidia-580-server-open-${KERNEL}"
  image_info packages/nvlink5 "$(printf '%s\n' nvlsm infiniband-diags nvidia-fabricmanager libnvidia-nscq nvidia-imex libnvsdm)"
  image_info module-types "proprietary open"
  export STUB_NVIDIA_VERSION=580.95.05
}

@test "NVLink5 systems get fabric manager, NVLSM, NSCQ, IMEX and NVSDM, started once mlx5_core and ib_umad are loaded" {
  nvlink5_node
  mkdir -p "${SYSFS_ROOT}/module/mlx5_core"
  start_driver_background
  wait_for_output "waiting for the ib_umad kernel module"
  not grep -q '^nvidia-fabricmanager-start.sh' "$STUB_LOG"
  mkdir -p "${SYSFS_ROOT}/module/ib_umad"
  wait_ready
  calls | grep -q "^apt-get install -y --no-install-recommends nvidia-utils-580-server linux-modules-nvidia-580-server-open-${KERNEL} nvlsm infiniband-diags nvidia-fabricmanager libnvidia-nscq nvidia-imex libnvsdm$"
  calls | grep -q "^nvidia-fabricmanager-start.sh --mode start --fm-config-file ${ROOT}/usr/share/nvidia/nvswitch/fabricmanager.cfg --fm-pid-file ${FABRICMANAGER_PID_FILE} --nvlsm-config-file ${ROOT}/usr/share/nvidia/nvlsm/nvlsm.conf --nvlsm-pid-file ${NVLSM_PID_FILE}$"
  nvlsm=$(cat "$NVLSM_PID_FILE")
  stop_driver
  [ "$status" -eq 0 ]
  not kill -0 "$nvlsm" 2>/dev/null
  grep -q 'stopping nvlsm' "$INIT_OUT"
}

@test "an NVLink5 system with an image that has no NVLink5 packages stops init, saying why" {
  nvlink5_node
  image_info packages/nvlink5 ""
  run "$DRIVER" init
  [ "$status" -eq 1 ]
  [[ $output == *"this node is an nvlink5 system, but this image has no fabric manager for branch 580"* ]]
  not grep -q '^apt-get\|^modprobe' "$STUB_LOG"
}

@test "a Blackwell GPU gets the open modules under KERNEL_MODULE_TYPE=auto, even on a branch that prefers proprietary" {
  image_info module-types "proprietary open"
  pci_device 0000:1b:00.0 0x10de 0x030200 0x2901
  start_driver
  calls | grep -q "^apt-get install .* linux-modules-nvidia-535-server-open-${KERNEL}$"
  grep -q 'the GPU 0000:1b:00.0 (device 0x2901) needs the open kernel modules' "$INIT_OUT"
  stop_driver
}

@test "a Hopper GPU on branch 535 keeps the proprietary modules under auto" {
  image_info module-types "proprietary open"
  pci_device 0000:1b:00.0 0x10de 0x030200 0x2330
  start_driver
  calls | grep -q "^apt-get install .* linux-modules-nvidia-535-server-${KERNEL}$"
  stop_driver
}

@test "a Blackwell GPU with an image without open modules, or KERNEL_MODULE_TYPE=proprietary, stops init, saying what to change" {
  pci_device 0000:1b:00.0 0x10de 0x030200 0x2941
  run "$DRIVER" init
  [ "$status" -eq 1 ]
  [[ $output == *"the GPU 0000:1b:00.0 (device 0x2941) runs only with the open kernel modules, which this image lacks: rebuild it with --kernel-module-type all"* ]]
  image_info module-types "proprietary open"
  export KERNEL_MODULE_TYPE=proprietary
  run "$DRIVER" init
  [ "$status" -eq 1 ]
  [[ $output == *"KERNEL_MODULE_TYPE=proprietary but the GPU 0000:1b:00.0 (device 0x2941) runs only with the open kernel modules"* ]]
  not grep -q '^apt-get\|^modprobe' "$STUB_LOG"
}

@test "a firmware search path already set on the node is kept" {
  printf '/lib/firmware/custom' >"${SYSFS_ROOT}/module/firmware_class/parameters/path"
  start_driver
  [ "$(cat "${SYSFS_ROOT}/module/firmware_class/parameters/path")" = /lib/firmware/custom ]
  grep -q 'keeping the firmware search path already set' "$INIT_OUT"
  stop_driver
}

@test "NVreg_EnableGpuFirmware=0 leaves the firmware search path unset" {
  printf 'NVreg_EnableGpuFirmware=0\n' >"${ROOT}/drivers/nvidia.conf"
  start_driver
  [ ! -s "${SYSFS_ROOT}/module/firmware_class/parameters/path" ]
  stop_driver
}

@test "reload_nvidia_peermem waits for the NVIDIA and OFED drivers, loads nvidia-peermem in the driver root, then waits for a signal" {
  start_command reload_nvidia_peermem
  wait_for_output "waiting for the NVIDIA and Mellanox OFED drivers"
  loaded_module nvidia 0
  not grep -q chroot "$STUB_LOG"
  mkdir -p "${ROOT}/run/mellanox/drivers"
  touch "${ROOT}/run/mellanox/drivers/.driver-ready"
  wait_for_output "nvidia-peermem loaded; waiting for a signal"
  [ "$(calls)" = "chroot ${RUN_DIR}/driver modprobe nvidia-peermem" ]
  stop_driver
  [ "$status" -eq 0 ]
}

@test "reload_nvidia_peermem with the host's OFED waits for mlx5_core, and fails when the load fails" {
  export USE_HOST_MOFED=true STUB_FAIL_chroot=1
  loaded_module nvidia 0
  mkdir -p "${SYSFS_ROOT}/module/mlx5_core"
  run "$DRIVER" reload_nvidia_peermem
  [ "$status" -eq 1 ]
  [[ $output == *"loading nvidia-peermem failed"* ]]
}

@test "probe_nvidia_peermem fails only while mlx5_core is loaded and nvidia-peermem is not" {
  run "$DRIVER" probe_nvidia_peermem
  [ "$status" -eq 0 ]
  [[ $output == *"mlx5_core) is not loaded yet"* ]]
  mkdir -p "${SYSFS_ROOT}/module/mlx5_core"
  run "$DRIVER" probe_nvidia_peermem
  [ "$status" -eq 1 ]
  [[ $output == *"nvidia-peermem is not loaded"* ]]
  loaded_module nvidia_peermem 0
  run "$DRIVER" probe_nvidia_peermem
  [ "$status" -eq 0 ]
}

@test "an unknown command is a usage error listing the commands" {
  run "$DRIVER" update
  [ "$status" -eq 2 ]
  [[ $output == *"usage: nvidia-driver init|reload_nvidia_peermem|probe_nvidia_peermem"* ]]
}

@test "STARTUP_PROBE in the environment is not run" {
  export STARTUP_PROBE=${BATS_TEST_TMPDIR}/evil
  printf '#!/bin/sh\ntouch %s/ran\n' "$BATS_TEST_TMPDIR" >"$STARTUP_PROBE"
  chmod +x "$STARTUP_PROBE"
  start_driver
  [ ! -e "${BATS_TEST_TMPDIR}/ran" ]
  calls | grep -qx nvidia-smi
  stop_driver
}

@test "DAEMON_STOP_TIMEOUT is checked as a number before any arithmetic runs it" {
  mkdir -p "${PERSISTENCED_PID_FILE%/*}"
  sleep 300 3>&- &
  old_daemon=$!
  echo "$old_daemon" >"$PERSISTENCED_PID_FILE"
  # shellcheck disable=SC2016 # the command substitution is the attack
  export DAEMON_STOP_TIMEOUT='x[$(touch '"${BATS_TEST_TMPDIR}"'/ran)]'
  run "$DRIVER" init
  kill "$old_daemon"
  [ "$status" -eq 1 ]
  [[ $output == *"DAEMON_STOP_TIMEOUT='x[\$(touch"*"is not a number of seconds"* ]]
  [ ! -e "${BATS_TEST_TMPDIR}/ran" ]
}

@test "as the image runs them, the scripts ignore host-path overrides in their environment" {
  [[ ! -e /etc/gpuop && ! -e /sys/module/nvidia ]] || skip "this machine has a real driver or driver image"
  loaded_module nvidia 0
  run env ROOT="$ROOT" SYSFS_ROOT="$SYSFS_ROOT" IMAGE_INFO_DIR="${ROOT}/etc/gpuop" "${COMMON}/nvidia-driver" init
  [ "$status" -eq 1 ]
  [[ $output == *"/etc/gpuop/kernel-version is missing"* ]]
  [[ $output != *"${ROOT}/etc/gpuop"* ]]
  run env ROOT="$ROOT" SYSFS_ROOT="$SYSFS_ROOT" "${COMMON}/nvidia-driver-probe" startup
  [ "$status" -eq 1 ]
  [[ $output == *"the nvidia module is not loaded yet"* ]]
  not grep -q nvidia-smi "$STUB_LOG"
}
