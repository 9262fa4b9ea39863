#!/usr/bin/env bash
# Writes each OS's precompiled driver build context from images/driver/common.
#
# A docker build context cannot reach outside its folder, and symlinks out of
# it are not followed, so each context holds real copies; this script is the
# only writer, and `--check` (run by the bats suite) fails when a copy has
# drifted from common/.
#
#   hack/sync-driver-contexts.sh           rewrite the contexts
#   hack/sync-driver-contexts.sh --check   only report drift
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
driver=${here}/images/driver
common=${driver}/common
files=(nvidia-driver nvidia-driver-probe build-image.sh)

# OS tag, the default CUDA base image version for it (the seed's 12.1.0 has
# no 24.04 base image), and a kernel and branch for the usage comment.
contexts=("ubuntu22.04 12.1.0 5.15.0-1033-aws 535" "ubuntu24.04 12.6.3 6.8.0-1047-oracle 580")

render() { # os_tag cuda_version example_kernel example_branch dest
  local os=$1 cuda=$2 kernel=$3 branch=$4 dest=$5
  mkdir -p "$dest"
  sed -e "s/@OS_TAG@/${os}/g" -e "s/@OS_VERSION@/${os#ubuntu}/g" -e "s/@CUDA_VERSION@/${cuda}/g" \
    -e "s/@EXAMPLE_KERNEL@/${kernel}/g" -e "s/@EXAMPLE_BRANCH@/${branch}/g" \
    "${common}/Dockerfile.in" >"${dest}/Dockerfile"
  local f
  for f in "${files[@]}"; do cp -p "${common}/${f}" "${dest}/${f}"; done
}

check=false
[[ ${1:-} == --check ]] && check=true
drift=0
for entry in "${contexts[@]}"; do
  read -r os cuda kernel branch <<<"$entry"
  dest=${driver}/${os}/precompiled
  if $check; then
    tmp=$(mktemp -d)
    render "$os" "$cuda" "$kernel" "$branch" "$tmp"
    if ! diff -r "$tmp" "$dest"; then
      echo "images/driver/${os}/precompiled differs from images/driver/common: run hack/sync-driver-contexts.sh" >&2
      drift=1
    fi
    rm -rf "$tmp"
  else
    render "$os" "$cuda" "$kernel" "$branch" "$dest"
  fi
done
exit "$drift"
