#!/usr/bin/env bash
# build-image.sh: the Dockerfile's main RUN step. Resolves, with apt, one
# consistent set of packages for one kernel and driver branch, and downloads
# it into a local apt repository that the container installs from at start
# (no network on the node). Nothing is installed here: the driver's firmware
# lands under /lib/firmware, which the driver pod mounts over from the host,
# so only an install at start puts it where the kernel reads it.
#
# The set: Canonical's signed precompiled modules for KERNEL_VERSION (open,
# proprietary or both; they conflict, so each flavour resolves on its own),
# the user space of exactly the release those modules were built from
# (decode, encode, fbc, gl, extra and headless-no-dkms included), and fabric
# manager, NSCQ, IMEX, NVSDM and the NVLink subnet manager of that release
# for NVSwitch and NVLink5 systems.
#
# Inputs (the build args): KERNEL_VERSION, DRIVER_BRANCH, OS_TAG, optional
# DRIVER_VERSION (the build fails unless the modules are of that release),
# KERNEL_MODULE_TYPE (all, the default, open or proprietary) and TARGETARCH
# (default: dpkg's architecture).
# ROOT prefixes the paths it writes (for tests; a build has no other input).
set -euo pipefail

ROOT=${ROOT:-}
LOCAL_REPO=${ROOT}/usr/local/repos/gpuop
IMAGE_INFO_DIR=${ROOT}/etc/gpuop
APT_DIR=${ROOT}/etc/apt

die() { printf 'build-image: error: %s\n' "$*" >&2; exit 1; }
log() { printf 'build-image: %s\n' "$*"; }

KERNEL_VERSION=${KERNEL_VERSION:-}
DRIVER_BRANCH=${DRIVER_BRANCH:-}
DRIVER_VERSION=${DRIVER_VERSION:-}
KERNEL_MODULE_TYPE=${KERNEL_MODULE_TYPE:-all}
ARCH=${TARGETARCH:-$(dpkg --print-architecture)}
[[ $KERNEL_VERSION =~ ^[0-9]+\.[0-9]+\.[0-9]+-[0-9]+(-[a-z0-9]+)+$ ]] ||
  die "KERNEL_VERSION='${KERNEL_VERSION}' is not an Ubuntu kernel release: pass the node's 'uname -r', e.g. --build-arg KERNEL_VERSION=5.15.0-1033-aws"
[[ $DRIVER_BRANCH =~ ^[0-9]{3}$ ]] ||
  die "DRIVER_BRANCH='${DRIVER_BRANCH}' is not a driver branch: pass three digits, e.g. --build-arg DRIVER_BRANCH=535"
[[ -z $DRIVER_VERSION || $DRIVER_VERSION =~ ^${DRIVER_BRANCH}\.[0-9]+(\.[0-9]+)?$ ]] ||
  die "DRIVER_VERSION='${DRIVER_VERSION}' is not a release of branch ${DRIVER_BRANCH}: pass e.g. ${DRIVER_BRANCH}.183.01, or leave it out"
case $KERNEL_MODULE_TYPE in
  proprietary | open) module_types=("$KERNEL_MODULE_TYPE") ;;
  all) module_types=(proprietary open) ;;
  *) die "KERNEL_MODULE_TYPE='${KERNEL_MODULE_TYPE}' is not one of all, open, proprietary" ;;
esac
case $ARCH in
  amd64 | arm64) ;;
  *) die "architecture '${ARCH}' is not amd64 or arm64, the two Canonical builds precompiled modules for" ;;
esac
[[ ! -e ${ROOT}/lib/firmware/nvidia && ! -e ${ROOT}/usr/lib/firmware/nvidia ]] ||
  die "the image already has NVIDIA firmware under /lib/firmware, which the driver pod mounts over at run time: install no driver package before build-image.sh"
B=$DRIVER_BRANCH
K=$KERNEL_VERSION

# The newest Debian version of a package whose upstream part is the release.
version_of_release() { # package release
  apt-cache madison "$1" | awk -v r="$2" '$3 ~ ("^" r "-") { print $3; exit }'
}

# The package names of each flavour's modules for this kernel; apt brings
# what they depend on (the objects to link, and on amd64 the signatures).
module_packages() { # type
  if [[ $1 == open ]]; then
    echo "linux-modules-nvidia-${B}-server-open-${K}"
  else
    echo "linux-objects-nvidia-${B}-server-${K} linux-modules-nvidia-${B}-server-${K}"
  fi
}

# The driver release a module package was built from: the lower bound it
# puts on nvidia-kernel-common.
release_of_modules() { # package
  apt-cache show --no-all-versions "$1" |
    sed -n 's/^Depends: //p' | tr ',' '\n' |
    sed -n "s/^ *nvidia-kernel-common-${B}-server (>= \([^)]*\)).*/\1/p" | head -n1
}

apt-get update

release=""
for type in "${module_types[@]}"; do
  other=$([[ $type == open ]] && echo proprietary || echo open)
  modules=$(module_packages "$type")
  modules=${modules##* }
  apt-cache show --no-all-versions "$modules" >/dev/null 2>&1 ||
    die "Canonical publishes no ${modules}: check the kernel and branch (apt-cache search linux-modules-nvidia-${B}-server-${K%%-*}), or build with KERNEL_MODULE_TYPE=${other}"
  r=$(release_of_modules "$modules")
  r=${r%%-*}
  [[ $r =~ ^${B}\.[0-9.]+$ ]] ||
    die "cannot tell which driver release ${modules} was built from (no 'nvidia-kernel-common-${B}-server (>= ...)' in its Depends): report this kernel and branch"
  if [[ -n $release && $r != "$release" ]]; then
    die "the open modules for kernel ${K} are of driver ${r} but the proprietary ones of ${release}: build one flavour, with KERNEL_MODULE_TYPE=open or proprietary"
  fi
  release=$r
done
if [[ -n $DRIVER_VERSION && $DRIVER_VERSION != "$release" ]]; then
  die "Canonical's modules for kernel ${K} are built from driver ${release}, not DRIVER_VERSION=${DRIVER_VERSION}: leave DRIVER_VERSION out, or use a kernel whose modules are of ${DRIVER_VERSION}"
fi
log "kernel ${K}: Canonical's branch ${B} modules are built from driver ${release}"

# User space as NVIDIA's precompiled image has it; all of one release.
userspace=()
for p in nvidia-utils nvidia-headless-no-dkms nvidia-compute-utils nvidia-kernel-common libnvidia-compute \
  libnvidia-decode libnvidia-encode libnvidia-extra libnvidia-gl; do
  userspace+=("${p}-${B}-server")
done
# Canonical builds the frame buffer capture library for amd64 only.
[[ $ARCH == amd64 ]] && userspace+=("libnvidia-fbc1-${B}-server")

# NVSwitch systems need fabric manager and NSCQ of the driver's exact release,
# and IMEX from 550; NVLink5 systems (B200, GB200) also the NVLink subnet
# manager and, on amd64, NVSDM. From 580 these packages lose the branch in
# their name (nvidia-fabricmanager-580 is only a virtual package).
if ((B >= 580)); then
  nvswitch=(nvidia-fabricmanager libnvidia-nscq nvidia-imex)
  nvsdm=libnvsdm
else
  nvswitch=("nvidia-fabricmanager-${B}" "libnvidia-nscq-${B}")
  ((B >= 550)) && nvswitch+=("nvidia-imex-${B}")
  nvsdm=""
  ((B < 560)) || nvsdm=libnvsdm-${B}
fi
pinned=("${userspace[@]}" "${nvswitch[@]}")
nvlink5=()
if ((B >= 570)); then
  nvlink5=(nvlsm infiniband-diags "${nvswitch[@]}")
  if [[ $ARCH == amd64 && -n $nvsdm ]]; then
    nvlink5+=("$nvsdm")
    pinned+=("$nvsdm")
  fi
fi

for p in "${pinned[@]}"; do
  [[ -n $(version_of_release "$p" "$release") ]] ||
    die "the archive has no ${p} ${release}, which the branch ${B} modules for kernel ${K} need (they are built from ${release}): this kernel and branch cannot be built now; pick a kernel whose modules are of a release the archive still has (apt-cache madison nvidia-utils-${B}-server), or another branch"
done

# Every driver package with a version of this release takes it, dependencies
# included; in the image too, so the container's install cannot drift. (apt
# takes version pins only for named packages, not for Package: *.)
mkdir -p "${APT_DIR}/preferences.d"
cat >"${APT_DIR}/preferences.d/gpuop-driver-release" <<EOF
# gpuop: the driver user space must be the release the kernel modules were built from.
Package: *nvidia* libnvsdm*
Pin: version ${release}-*
Pin-Priority: 1001
EOF

mkdir -p "${LOCAL_REPO}/partial"
# Downloads the set with whatever it depends on that the image lacks: one
# resolution per module flavour, as they conflict.
download() { # what packages...
  local what=$1
  shift
  log "resolving and downloading ${what}"
  apt-get install -y --no-install-recommends --download-only -o "Dir::Cache::Archives=${LOCAL_REPO}" "$@" ||
    die "apt cannot resolve ${what} for kernel ${K} and driver ${release} (see above)"
}
for type in "${module_types[@]}"; do
  # shellcheck disable=SC2046 # module_packages prints package names
  download "the ${type} modules with the user space" $(module_packages "$type") "${userspace[@]}"
done
download "fabric manager for NVSwitch systems" "${nvswitch[@]}"
((${#nvlink5[@]} == 0)) || download "the NVLink5 packages" "${nvlink5[@]}"
rm -rf "${LOCAL_REPO}/partial" "${LOCAL_REPO}/lock"
(cd "$LOCAL_REPO" && apt-ftparchive packages . >Packages)

# From here on apt sees only the local repository: the container's install
# cannot reach for the network. apt verified the archive's signatures when
# it downloaded, and the index is our own, hence trusted=yes.
mkdir -p "${APT_DIR}/sources.online"
find "${APT_DIR}" -maxdepth 2 \( -name sources.list -o -path '*/sources.list.d/*' \) -type f \
  -exec mv -t "${APT_DIR}/sources.online" {} +
mkdir -p "${APT_DIR}/sources.list.d"
echo "deb [trusted=yes] file:${LOCAL_REPO} ./" >"${APT_DIR}/sources.list.d/gpuop-local.list"
apt-get update
apt-get clean

# What the container installs at start, by name: the local repository holds
# one version of each.
mkdir -p "${IMAGE_INFO_DIR}/packages"
printf '%s\n' "${userspace[@]}" >"${IMAGE_INFO_DIR}/packages/userspace"
for type in "${module_types[@]}"; do
  module_packages "$type" | tr ' ' '\n' >"${IMAGE_INFO_DIR}/packages/${type}"
done
printf '%s\n' "${nvswitch[@]}" >"${IMAGE_INFO_DIR}/packages/nvswitch"
printf '%s\n' "${nvlink5[@]}" >"${IMAGE_INFO_DIR}/packages/nvlink5"
echo "$K" >"${IMAGE_INFO_DIR}/kernel-version"
echo "$B" >"${IMAGE_INFO_DIR}/driver-branch"
echo "$release" >"${IMAGE_INFO_DIR}/driver-version"
echo "${OS_TAG:?}" >"${IMAGE_INFO_DIR}/os-tag"
echo "${module_types[*]}" >"${IMAGE_INFO_DIR}/module-types"
log "driver ${release} for kernel ${K} on ${ARCH} (${module_types[*]} modules)"
