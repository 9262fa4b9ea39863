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
apt-get install -y --no-install-recommends linux-objects-nvidia-535-server-${KERNEL} linux-signatures-nvidia-${KERNEL} linux-modules-nvidia-535-server-${KERNEL}
depmod -a ${KERNEL}
mount --rbind ${ROOT} ${RUN_DIR}/driver
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
  calls | grep -n . | grep -q "^9:mount --rbind"
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
  calls | grep '^modprobe' | diff -u - <(printf 'modprobe %s\n' nvidia nvidia-uvm nvidia-modeset nvidia-peermem)
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
  calls | grep -q "^apt-get install -y --no-install-recommends linux-objects-nvidia-535-server-open-${KERNEL} linux-signatures-nvidia-${KERNEL} linux-modules-nvidia-535-server-open-${KERNEL}$"
  stop_driver
}

@test "KERNEL_MODULE_TYPE=auto prefers open modules from branch 560 on" {
  image_info module-types "proprietary open"
  image_info driver-branch 570
  image_info driver-version ""
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
