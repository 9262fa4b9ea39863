#!/usr/bin/env bats
# build-image.sh's package resolution, by apt's own resolver, against a
# stand-in archive with the real package names, versions and Depends pins
# (see archive.bash). After each build apt sees only the image's local
# repository, as the container does at start; `apt-get --simulate` then shows
# what the container's install would bring.

load helpers
load archive

BUILD=$(cd "${BATS_TEST_DIRNAME}/../common" && pwd)/build-image.sh

setup_file() {
  command -v apt-ftparchive >/dev/null || {
    echo "apt-ftparchive is missing: run hack/test-deps.sh" >&2
    return 1
  }
  make_archive "${BATS_FILE_TMPDIR}/archive"
}

# Runs build-image.sh for a kernel, branch and architecture in a fresh root.
build() { # kernel branch arch [VAR=value...]
  ROOT=${BATS_TEST_TMPDIR}/root
  private_apt "$ROOT" "$3" "${BATS_FILE_TMPDIR}/archive"
  run env ROOT="$ROOT" KERNEL_VERSION="$1" DRIVER_BRANCH="$2" TARGETARCH="$3" OS_TAG=ubuntu22.04 "${@:4}" "$BUILD"
}

built() { [ "$status" -eq 0 ] || { echo "$output"; false; }; }
info() { cat "${ROOT}/etc/gpuop/$1"; }
repo() { ls "${ROOT}/usr/local/repos/gpuop"; }

# What apt would install at start from the image's repository alone:
# "name version" per package.
start_install() { # package lists...
  local lists=() l
  for l in "$@"; do lists+=("${ROOT}/etc/gpuop/packages/${l}"); done
  # shellcheck disable=SC2046 # one package name per line
  apt-get install --simulate --no-install-recommends $(cat "${lists[@]}") |
    awk '$1 == "Inst" { sub(/^\(/, "", $3); print $2, $3 }' | sort
}

@test "535, modules built from an older release than the archive's newest: all user space is the modules' release" {
  build "$K535" 535 amd64
  built
  [ "$(info driver-version)" = 535.161.08 ]
  [ "$(info module-types)" = "proprietary open" ]
  not grep -q 535.183.01 <(repo)
  grep -qx 'nvidia-utils-535-server_535.161.08-0ubuntu0.22.04.1_amd64.deb' <(repo)
  # Neither flavour is installed here: both resolve at start, with the same user space.
  installs=$(start_install userspace proprietary)
  grep -qx "linux-modules-nvidia-535-server-${K535} 5.15.0-1033.1" <<<"$installs"
  grep -qx "linux-signatures-nvidia-${K535} 5.15.0-1033.1" <<<"$installs"
  grep -qx "nvidia-firmware-535-server-535.161.08 535.161.08-0ubuntu0.22.04.1" <<<"$installs"
  installs=$(start_install userspace open)
  grep -qx "linux-modules-nvidia-535-server-open-${K535} 5.15.0-1033.1" <<<"$installs"
  # Every NVIDIA package at start is of the one release.
  grep -v '^linux-' <<<"$installs" | not grep -v ' 535\.161\.08-'
  [ "$(start_install nvswitch)" = "$(printf '%s\n' 'libnvidia-nscq-535 535.161.08-1' 'nvidia-fabricmanager-535 535.161.08-1')" ]
  # Nothing was installed: apt's dpkg refuses every change.
  [ ! -e "${APT_PRIVATE}/dpkg.calls" ]
}

@test "the user space is NVIDIA's full set: decode, encode, fbc, gl, extra and headless-no-dkms" {
  build "$K535" 535 amd64 KERNEL_MODULE_TYPE=proprietary
  built
  for p in nvidia-utils nvidia-headless-no-dkms libnvidia-decode libnvidia-encode libnvidia-fbc1 libnvidia-gl libnvidia-extra libnvidia-compute; do
    grep -qx "${p}-535-server" "${ROOT}/etc/gpuop/packages/userspace" || { echo "no ${p}"; false; }
    start_install userspace proprietary | grep -q "^${p}-535-server 535.161.08-" || { echo "${p} not installed at start"; false; }
  done
}

@test "580: fabric manager, NSCQ, IMEX and NVSDM under their unversioned names, and the NVLink5 set" {
  build "$K580" 580 amd64
  built
  [ "$(info driver-version)" = 580.95.05 ]
  [ "$(cat "${ROOT}/etc/gpuop/packages/nvswitch")" = "$(printf '%s\n' nvidia-fabricmanager libnvidia-nscq nvidia-imex)" ]
  diff -u - <(start_install nvlink5) <<'EOF'
infiniband-diags 50.0-2
libnvidia-nscq 580.95.05-1
libnvsdm 580.95.05-1
nvidia-fabricmanager 580.95.05-1
nvidia-imex 580.95.05-1
nvlsm 2025.06.5-1
EOF
}

@test "arm64: no linux-signatures, fbc or NVSDM, which Canonical and NVIDIA build for amd64 only" {
  build "$K580" 580 arm64
  built
  not grep -q signatures <(repo)
  not grep -q fbc1 "${ROOT}/etc/gpuop/packages/userspace"
  not grep -q nvsdm "${ROOT}/etc/gpuop/packages/nvlink5"
  start_install userspace open | grep -qx "linux-modules-nvidia-580-server-open-${K580} 6.8.0-1047.1"
  start_install userspace proprietary | grep -qx "nvidia-utils-580-server 580.95.05-0ubuntu0.22.04.1"
  grep -q '_arm64\.deb$' <(repo)
  not grep -q '_amd64\.deb$' <(repo)
}

@test "arm64 with branch 535 builds too" {
  build "$K535" 535 arm64
  built
  [ "$(info driver-version)" = 535.161.08 ]
}

@test "KERNEL_MODULE_TYPE=open ships the open modules only" {
  build "$K535" 535 amd64 KERNEL_MODULE_TYPE=open
  built
  [ "$(info module-types)" = open ]
  [ ! -e "${ROOT}/etc/gpuop/packages/proprietary" ]
  not grep -q "^linux-modules-nvidia-535-server-${K535}_" <(repo)
}

@test "modules built from a release the archive no longer has fail the build, naming kernel and branch" {
  build "$K535_GONE" 535 amd64
  [ "$status" -eq 1 ]
  [[ $output == *"the archive has no nvidia-utils-535-server 535.129.03, which the branch 535 modules for kernel ${K535_GONE} need"* ]]
  [[ $output == *"this kernel and branch cannot be built now"* ]]
}

@test "no fabric manager of the modules' release fails the build rather than dropping NVSwitch support" {
  build "$K535_NO_FM" 535 amd64
  [ "$status" -eq 1 ]
  [[ $output == *"the archive has no nvidia-fabricmanager-535 535.154.05, which the branch 535 modules for kernel ${K535_NO_FM} need"* ]]
}

@test "a DRIVER_VERSION other than the modules' release fails, saying which release they are" {
  build "$K535" 535 amd64 DRIVER_VERSION=535.183.01
  [ "$status" -eq 1 ]
  [[ $output == *"modules for kernel ${K535} are built from driver 535.161.08, not DRIVER_VERSION=535.183.01"* ]]
}

@test "a kernel Canonical has no modules for fails, naming the package" {
  build 5.15.0-9999-aws 535 amd64
  [ "$status" -eq 1 ]
  [[ $output == *"Canonical publishes no linux-modules-nvidia-535-server-5.15.0-9999-aws"* ]]
}

@test "NVIDIA firmware already under /lib/firmware fails the build: the driver pod mounts over it" {
  ROOT=${BATS_TEST_TMPDIR}/root
  mkdir -p "${ROOT}/usr/lib/firmware/nvidia/535.161.08"
  build "$K535" 535 amd64
  [ "$status" -eq 1 ]
  [[ $output == *"NVIDIA firmware under /lib/firmware"* ]]
}
