#!/usr/bin/env bash
# build-image.sh: the Dockerfile's one RUN step. Installs the driver's user
# space, and downloads Canonical's signed precompiled modules for exactly one
# kernel into a local apt repository, so the container installs them at
# start (where KERNEL_MODULE_TYPE picks open or proprietary; the two
# conflict, so they cannot both be installed here) without any network.
#
# Inputs (the build args): KERNEL_VERSION, DRIVER_BRANCH, OS_TAG, optional
# DRIVER_VERSION (the build fails unless the archive's driver is that
# release) and KERNEL_MODULE_TYPE (proprietary, open or all).
# ROOT prefixes the paths it writes (for tests).
set -euo pipefail

ROOT=${ROOT:-}
LOCAL_REPO=${LOCAL_REPO:-${ROOT}/usr/local/repos/gpuop}
IMAGE_INFO_DIR=${IMAGE_INFO_DIR:-${ROOT}/etc/gpuop}
APT_DIR=${APT_DIR:-${ROOT}/etc/apt}

die() { printf 'build-image: error: %s\n' "$*" >&2; exit 1; }
log() { printf 'build-image: %s\n' "$*"; }

KERNEL_VERSION=${KERNEL_VERSION:-}
DRIVER_BRANCH=${DRIVER_BRANCH:-}
DRIVER_VERSION=${DRIVER_VERSION:-}
KERNEL_MODULE_TYPE=${KERNEL_MODULE_TYPE:-proprietary}
[[ $KERNEL_VERSION =~ ^[0-9]+\.[0-9]+\.[0-9]+-[0-9]+(-[a-z0-9]+)+$ ]] ||
  die "KERNEL_VERSION='${KERNEL_VERSION}' is not an Ubuntu kernel release: pass the node's 'uname -r', e.g. --build-arg KERNEL_VERSION=5.15.0-1033-aws"
[[ $DRIVER_BRANCH =~ ^[0-9]{3}$ ]] ||
  die "DRIVER_BRANCH='${DRIVER_BRANCH}' is not a driver branch: pass three digits, e.g. --build-arg DRIVER_BRANCH=535"
[[ -z $DRIVER_VERSION || $DRIVER_VERSION =~ ^${DRIVER_BRANCH}\.[0-9]+(\.[0-9]+)?$ ]] ||
  die "DRIVER_VERSION='${DRIVER_VERSION}' is not a release of branch ${DRIVER_BRANCH}: pass e.g. ${DRIVER_BRANCH}.183.01, or leave it out"
case $KERNEL_MODULE_TYPE in
  proprietary) module_types=(proprietary) ;;
  open) module_types=(open) ;;
  all) module_types=(proprietary open) ;;
  *) die "KERNEL_MODULE_TYPE='${KERNEL_MODULE_TYPE}' is not one of proprietary, open, all" ;;
esac

# The newest Debian version of a package whose upstream part is the release.
version_of_release() { # package release
  apt-cache madison "$1" | awk -v r="$2" '$3 ~ ("^" r "-") { print $3; exit }'
}

apt-get update
apt-get install -y --no-install-recommends apt-utils ca-certificates kmod util-linux

userspace=("nvidia-utils-${DRIVER_BRANCH}-server" "nvidia-compute-utils-${DRIVER_BRANCH}-server" "libnvidia-compute-${DRIVER_BRANCH}-server")
pin=""
if [[ -n $DRIVER_VERSION ]]; then
  pin=$(version_of_release "${userspace[0]}" "$DRIVER_VERSION")
  [[ -n $pin ]] || die "the archive has no ${userspace[0]} ${DRIVER_VERSION}: leave DRIVER_VERSION out to take the branch's current release"
  pin="=${pin}"
fi
log "installing the user-space driver of branch ${DRIVER_BRANCH}"
apt-get install -y --no-install-recommends "${userspace[@]/%/${pin}}"
release=$(dpkg-query -W -f='${Version}' "${userspace[0]}")
release=${release%%-*}

# Fabric manager must be the same release as the driver; without one the
# image still serves every system but NVSwitch ones.
fm=$(version_of_release "nvidia-fabricmanager-${DRIVER_BRANCH}" "$release")
if [[ -n $fm ]]; then
  apt-get install -y --no-install-recommends "nvidia-fabricmanager-${DRIVER_BRANCH}=${fm}" "libnvidia-nscq-${DRIVER_BRANCH}=${fm}"
else
  log "warning: no nvidia-fabricmanager-${DRIVER_BRANCH} ${release} in the archive: this image cannot drive NVSwitch systems"
fi

mkdir -p "${LOCAL_REPO}/partial"
for type in "${module_types[@]}"; do
  flavour=server
  [[ $type == open ]] && flavour=server-open
  packages=("linux-objects-nvidia-${DRIVER_BRANCH}-${flavour}-${KERNEL_VERSION}" "linux-signatures-nvidia-${KERNEL_VERSION}" "linux-modules-nvidia-${DRIVER_BRANCH}-${flavour}-${KERNEL_VERSION}")
  for p in "${packages[@]}"; do
    apt-cache show "$p" >/dev/null 2>&1 ||
      die "Canonical publishes no ${p}: check the kernel and branch (apt-cache search linux-modules-nvidia-${DRIVER_BRANCH}-${flavour}-${KERNEL_VERSION%%-*}) or use KERNEL_MODULE_TYPE=$([[ $type == open ]] && echo proprietary || echo open)"
  done
  log "downloading the ${type} modules for kernel ${KERNEL_VERSION}"
  # Downloads each package and whatever it needs that the image lacks.
  apt-get install -y --no-install-recommends --download-only -o "Dir::Cache::Archives=${LOCAL_REPO}" "${packages[@]}"
done
rm -rf "${LOCAL_REPO}/partial" "${LOCAL_REPO}/lock"
(cd "$LOCAL_REPO" && apt-ftparchive packages . >Packages)

# From here on apt sees only the local repository: the container's install
# cannot reach for the network. apt verified the archive's signatures when
# it downloaded, and the index is our own, hence trusted=yes.
mkdir -p "${APT_DIR}/sources.online"
find "${APT_DIR}" -maxdepth 2 \( -name sources.list -o -path '*/sources.list.d/*' \) -type f \
  -exec mv -t "${APT_DIR}/sources.online" {} +
mkdir -p "${APT_DIR}/sources.list.d"
echo "deb [trusted=yes] file:${LOCAL_REPO#"${ROOT}"} ./" >"${APT_DIR}/sources.list.d/gpuop-local.list"
apt-get update
apt-get clean

mkdir -p "$IMAGE_INFO_DIR"
echo "$KERNEL_VERSION" >"${IMAGE_INFO_DIR}/kernel-version"
echo "$DRIVER_BRANCH" >"${IMAGE_INFO_DIR}/driver-branch"
echo "$release" >"${IMAGE_INFO_DIR}/driver-version"
echo "${OS_TAG:?}" >"${IMAGE_INFO_DIR}/os-tag"
echo "${module_types[*]}" >"${IMAGE_INFO_DIR}/module-types"
log "driver ${release} for kernel ${KERNEL_VERSION} (${module_types[*]} modules)"
