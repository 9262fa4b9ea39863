# shellcheck shell=bash
# shellcheck disable=SC2034 # the .bats files use these variables
# A stand-in for the archives build-image.sh resolves against (Ubuntu's, with
# Canonical's precompiled modules, and NVIDIA's CUDA repository with fabric
# manager): empty .deb packages made with dpkg-deb that carry the real package
# names, versions and Depends relations, indexed as one flat apt repository
# for amd64 and arm64. apt itself resolves against it, pointed at a private
# root by APT_CONFIG, with a dpkg that refuses to install anything.
#
# Relations modelled on the real packages (simplified to what decides the
# resolution):
#   user space (V = <release>-0ubuntu0.22.04.1): every library and tool of a
#     release pins its siblings with (= V); nvidia-kernel-common pulls the
#     release's firmware package (files under /lib/firmware)
#   linux-modules-nvidia-<B>-server-<K>: (>= R) on nvidia-kernel-common, where
#     R is the release the modules were built from
#   linux-modules-nvidia-<B>-server-open-<K>: (>= R) and (<= R-1) on it
#   linux-signatures-nvidia-<K>: amd64 only; the modules need it there
#   libnvidia-fbc1 and libnvsdm: amd64 only
#   from 580 fabric manager, NSCQ, IMEX and NVSDM are unversioned packages;
#     nvidia-fabricmanager-580 is only a name nvidia-fabricmanager provides

# Kernels and what their modules were built from:
K535=5.15.0-1033-aws        # 535 modules from 535.161.08; the archive's newest 535 is 535.183.01
K535_GONE=5.15.0-1020-aws   # 535 modules from 535.129.03, whose user space left the archive
K535_NO_FM=5.15.0-1030-aws  # 535 modules from 535.154.05, whose fabric manager the archive lacks
K580=6.8.0-1047-oracle      # 580 modules from 580.95.05
ARCHES=(amd64 arm64)

# One package: name version arch [Depends [Provides [Conflicts [file...]]]].
deb() {
  local name=$1 version=$2 arch=$3 depends=${4:-} provides=${5:-} conflicts=${6:-} f
  local dir=${ARCHIVE_WORK}/${name}_${version}_${arch}
  mkdir -p "${dir}/DEBIAN"
  {
    echo "Package: ${name}"
    echo "Version: ${version}"
    echo "Architecture: ${arch}"
    echo "Maintainer: gpuop tests <tests@gpuop.invalid>"
    [[ -n $depends ]] && echo "Depends: ${depends}"
    [[ -n $provides ]] && echo "Provides: ${provides}"
    [[ -n $conflicts ]] && echo "Conflicts: ${conflicts}"
    echo "Description: stand-in for ${name}"
  } >"${dir}/DEBIAN/control"
  for f in "${@:7}"; do
    mkdir -p "${dir}/${f%/*}"
    : >"${dir}/${f}"
  done
  dpkg-deb --root-owner-group -Znone --build "$dir" "${ARCHIVE}/" >/dev/null
}

userspace_release() { # branch release arch
  local b=$1 r=$2 arch=$3 v=${2}-0ubuntu0.22.04.1 p
  deb "nvidia-firmware-${b}-server-${r}" "$v" "$arch" "" "" "" "lib/firmware/nvidia/${r}/gsp_ga10x.bin"
  deb "nvidia-kernel-common-${b}-server" "$v" "$arch" "nvidia-firmware-${b}-server-${r} (= ${v})"
  deb "libnvidia-compute-${b}-server" "$v" "$arch"
  deb "libnvidia-cfg1-${b}-server" "$v" "$arch" "libnvidia-compute-${b}-server (= ${v})"
  deb "nvidia-compute-utils-${b}-server" "$v" "$arch" "libnvidia-compute-${b}-server (= ${v})"
  deb "nvidia-utils-${b}-server" "$v" "$arch" "libnvidia-compute-${b}-server (= ${v})"
  deb "nvidia-headless-no-dkms-${b}-server" "$v" "$arch" \
    "nvidia-kernel-common-${b}-server (= ${v}), nvidia-compute-utils-${b}-server (= ${v}), libnvidia-cfg1-${b}-server (= ${v}), libnvidia-compute-${b}-server (= ${v})"
  for p in decode encode extra gl; do
    deb "libnvidia-${p}-${b}-server" "$v" "$arch" "libnvidia-compute-${b}-server (= ${v})"
  done
  [[ $arch == amd64 ]] && deb "libnvidia-fbc1-${b}-server" "$v" "$arch" "libnvidia-compute-${b}-server (= ${v})"
  return 0
}

modules_for_kernel() { # branch release kernel arch
  local b=$1 r=$2 k=$3 arch=$4 kv signatures=""
  kv=${k%-*}.1
  if [[ $arch == amd64 ]]; then
    deb "linux-signatures-nvidia-${k}" "$kv" "$arch"
    signatures="linux-signatures-nvidia-${k} (= ${kv}), "
  fi
  deb "linux-objects-nvidia-${b}-server-${k}" "$kv" "$arch"
  deb "linux-modules-nvidia-${b}-server-${k}" "$kv" "$arch" \
    "${signatures}linux-objects-nvidia-${b}-server-${k} (= ${kv}), nvidia-kernel-common-${b}-server (>= ${r})"
  deb "linux-objects-nvidia-${b}-server-open-${k}" "$kv" "$arch"
  deb "linux-modules-nvidia-${b}-server-open-${k}" "$kv" "$arch" \
    "${signatures}linux-objects-nvidia-${b}-server-open-${k} (= ${kv}), nvidia-kernel-common-${b}-server (>= ${r}), nvidia-kernel-common-${b}-server (<= ${r}-1)" \
    "" "linux-modules-nvidia-${b}-server-${k}"
}

# NVIDIA's CUDA repository: versions are <release>-1.
fabric_release() { # branch release arch
  local b=$1 r=$2 arch=$3 v=${2}-1
  if ((b >= 580)); then
    deb nvidia-fabricmanager "$v" "$arch" "" "nvidia-fabricmanager-${b}"
    deb libnvidia-nscq "$v" "$arch" "" "libnvidia-nscq-${b}"
    deb nvidia-imex "$v" "$arch"
    [[ $arch == amd64 ]] && deb libnvsdm "$v" "$arch"
  else
    deb "nvidia-fabricmanager-${b}" "$v" "$arch"
    deb "libnvidia-nscq-${b}" "$v" "$arch"
  fi
  return 0
}

# Builds the archive once into $1 (packages and a Packages index).
make_archive() {
  ARCHIVE=$1
  ARCHIVE_WORK=${1}.work
  mkdir -p "$ARCHIVE" "$ARCHIVE_WORK"
  local arch
  for arch in "${ARCHES[@]}"; do
    userspace_release 535 535.161.08 "$arch"
    userspace_release 535 535.183.01 "$arch"
    userspace_release 535 535.154.05 "$arch"
    userspace_release 580 580.95.05 "$arch"
    modules_for_kernel 535 535.161.08 "$K535" "$arch"
    modules_for_kernel 535 535.129.03 "$K535_GONE" "$arch"
    modules_for_kernel 535 535.154.05 "$K535_NO_FM" "$arch"
    modules_for_kernel 580 580.95.05 "$K580" "$arch"
    fabric_release 535 535.161.08 "$arch"
    fabric_release 535 535.183.01 "$arch"
    fabric_release 580 580.95.05 "$arch"
    deb nvlsm 2025.06.5-1 "$arch" "infiniband-diags"
    deb infiniband-diags 50.0-2 "$arch"
  done
  rm -rf "$ARCHIVE_WORK"
  (cd "$ARCHIVE" && apt-ftparchive packages . >Packages)
}

# A private apt root for one build: its own state, cache, sources (under
# $ROOT/etc/apt, which build-image.sh rewrites), architecture, and a dpkg
# that records and refuses anything but queries.
private_apt() { # root arch archive
  local root=$1 arch=$2 archive=$3 t=${1}.apt
  mkdir -p "${t}"/{state/lists/partial,cache/archives/partial,conf.d,log,bin} "${root}/etc/apt/sources.list.d"
  : >"${t}/status"
  cat >"${t}/bin/dpkg" <<EOF
#!/usr/bin/env bash
# A dpkg for the private root: answers apt's queries, records and refuses the rest.
case \${1:-} in
  --print-foreign-architectures) exit 0 ;;
  --assert-*) exit 0 ;;
esac
echo "dpkg \$*" >>"${t}/dpkg.calls"
echo "dpkg: refusing to change the test machine: \$*" >&2
exit 1
EOF
  chmod +x "${t}/bin/dpkg"
  cat >"${t}/apt.conf" <<EOF
Dir::State "${t}/state";
Dir::State::status "${t}/status";
Dir::Cache "${t}/cache";
Dir::Etc "${root}/etc/apt";
Dir::Etc::Parts "${t}/conf.d";
Dir::Etc::TrustedParts "${t}/trusted.gpg.d";
Dir::Log "${t}/log";
Dir::Bin::dpkg "${t}/bin/dpkg";
APT::Architecture "${arch}";
APT::Architectures { "${arch}"; };
Acquire::Languages "none";
APT::Sandbox::User "$(id -un)";
Debug::NoLocking "true";
EOF
  # copy:, not file:, so apt copies the packages into the cache as it would download them.
  echo "deb [trusted=yes] copy:${archive} ./" >"${root}/etc/apt/sources.list.d/archive.list"
  export APT_CONFIG=${t}/apt.conf
  APT_PRIVATE=$t
}
