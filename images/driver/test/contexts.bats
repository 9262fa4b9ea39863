#!/usr/bin/env bats
# Static checks of the precompiled build contexts (no Docker engine here).

REPO=$(cd "${BATS_TEST_DIRNAME}/../../.." && pwd)
CONTEXTS=(ubuntu22.04 ubuntu24.04)

@test "every context is an exact rendering of images/driver/common" {
  run "${REPO}/hack/sync-driver-contexts.sh" --check
  [ "$status" -eq 0 ] || { echo "$output"; false; }
}

@test "the Dockerfiles take the seed's build args and a BASE_IMAGE defaulting to the CUDA base" {
  for os in "${CONTEXTS[@]}"; do
    df=${REPO}/images/driver/${os}/precompiled/Dockerfile
    for arg in KERNEL_VERSION CUDA_VERSION DRIVER_BRANCH DRIVER_VERSION; do
      grep -Eq "^ARG ${arg}(=|$)" "$df" || { echo "${df}: no ARG ${arg}"; false; }
    done
    grep -qx "ARG BASE_IMAGE=nvidia/cuda:\${CUDA_VERSION}-base-${os}" "$df"
    grep -qx "ARG OS_TAG=${os}" "$df"
    # BASE_IMAGE and CUDA_VERSION must be declared before FROM to be usable in it.
    [ "$(grep -n '^FROM ' "$df" | cut -d: -f1)" -gt "$(grep -n '^ARG BASE_IMAGE=' "$df" | cut -d: -f1)" ]
    # shellcheck disable=SC2016 # a literal Dockerfile line
    grep -qx 'FROM ${BASE_IMAGE}' "$df"
    grep -qx 'ENTRYPOINT \["nvidia-driver", "init"\]' "$df"
  done
}

@test "the image runs with NVIDIA_VISIBLE_DEVICES=void and ships both module flavours by default" {
  for os in "${CONTEXTS[@]}"; do
    df=${REPO}/images/driver/${os}/precompiled/Dockerfile
    # Set after FROM, so it replaces the CUDA base image's "all".
    [ "$(grep -n '^ENV NVIDIA_VISIBLE_DEVICES=void$' "$df" | cut -d: -f1)" -gt "$(grep -n '^FROM ' "$df" | cut -d: -f1)" ]
    grep -qx 'ARG KERNEL_MODULE_TYPE=all' "$df"
    grep -qx 'ARG TARGETARCH' "$df"
  done
}

@test "every file a Dockerfile copies is in its context, and the entrypoint and probe are copied" {
  for os in "${CONTEXTS[@]}"; do
    ctx=${REPO}/images/driver/${os}/precompiled
    copied=$(awk '$1 == "COPY" { for (i = 2; i < NF; i++) print $i }' "${ctx}/Dockerfile")
    for f in $copied; do
      [ -f "${ctx}/${f}" ] || { echo "${ctx}/Dockerfile copies ${f}, which is not in the context"; false; }
    done
    grep -qx nvidia-driver <<<"$copied"
    grep -qx nvidia-driver-probe <<<"$copied"
    # One check a line: bats' errexit ignores a failure that is not last in an && chain.
    for x in nvidia-driver nvidia-driver-probe build-image.sh; do
      [ -x "${ctx}/${x}" ] || { echo "${ctx}/${x} is not executable"; false; }
    done
  done
}

@test "shellcheck passes on every shell script of the driver image and its tests" {
  command -v shellcheck || { echo "shellcheck is missing: run hack/test-deps.sh"; false; }
  cd "$REPO"
  shellcheck images/driver/common/nvidia-driver images/driver/common/nvidia-driver-probe \
    images/driver/common/build-image.sh images/driver/test/stubs/stub images/driver/test/helpers.bash \
    images/driver/test/archive.bash images/driver/test/fake-root/run \
    images/driver/test/*.bats hack/sync-driver-contexts.sh hack/test-deps.sh
}
