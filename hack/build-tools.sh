#!/usr/bin/env bash
# Builds the local cluster's binaries (Kubernetes, etcd, kwok, helm, the OCI
# registry) from the Go module proxy into .tools/<component>-<version>/bin;
# `hack/build-tools.sh nvidia-gpu-operator` builds NVIDIA's operator (for `make bench`).
# A component is rebuilt only when its pinned version or its tools/go module
# changes; a failed download or build stops at once with the failing command.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=hack/versions.env
. "$root/hack/versions.env"
# -mod=readonly: the committed go.sum pins every module; a missing entry fails loudly.
export GOFLAGS=-mod=readonly GOTOOLCHAIN=local CGO_ENABLED=0
export PATH=/usr/local/go/bin:$PATH
command -v go >/dev/null || { echo "build-tools: go not found; install Go 1.26 at /usr/local/go" >&2; exit 1; }

only=${1:-all}
cache=${GPUOP_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gpuop/tools}

# build <component> <version> <module dir> <ldflags> <binary>=<package>...
build() {
  local name=$1 version=$2 dir=$3 ldflags=$4; shift 4
  [[ $only == all || $only == "$name" ]] || return 0
  local out="$root/.tools/$name-$version/bin" stamp
  stamp="$root/.tools/$name-$version/.built"
  # The cache key covers everything that changes the output.
  local key; key=$(cat "$root/tools/go/$dir/go.mod" "$root/tools/go/$dir/go.sum" <(echo "$ldflags $* $(go env GOVERSION)") | sha256sum | cut -c1-16)
  if [[ -f $stamp && $(cat "$stamp") == "$key" ]]; then return 0; fi
  # A machine-wide cache outlives the checkout, so fresh clones (CI) reuse earlier builds.
  local cached="$cache/$name-$version-$key"
  if [[ -f $cached/.built ]]; then
    mkdir -p "$out" && cp -f "$cached"/bin/* "$out/" && echo "$key" > "$stamp"
    echo "build-tools: $name $version taken from $cached" >&2
    return 0
  fi
  echo "build-tools: building $name $version" >&2
  local start=$SECONDS spec bin pkg
  mkdir -p "$out"
  for spec in "$@"; do
    bin=${spec%%=*} pkg=${spec#*=}
    if ! (cd "$root/tools/go/$dir" && go build -trimpath -ldflags "-s -w $ldflags" -o "$out/$bin.tmp" "$pkg"); then
      echo "build-tools: FAILED: (cd tools/go/$dir && go build -o $out/$bin $pkg)" >&2
      exit 1
    fi
    mv -f "$out/$bin.tmp" "$out/$bin"
  done
  echo "$key" > "$stamp"
  echo "build-tools: $name $version built in $((SECONDS - start))s" >&2
  if mkdir -p "$cached/bin" && cp -f "$out"/* "$cached/bin/"; then echo "$key" > "$cached/.built"; fi
}

kv=v$KUBERNETES_VERSION
kminor=${KUBERNETES_VERSION#1.}; kminor=${kminor%%.*}
kstamp=""
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  kstamp+=" -X $p.gitVersion=$kv -X $p.gitMajor=1 -X $p.gitMinor=$kminor -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
done
build kubernetes "$KUBERNETES_VERSION" kubernetes "$kstamp" \
  kube-apiserver=k8s.io/kubernetes/cmd/kube-apiserver \
  kube-controller-manager=k8s.io/kubernetes/cmd/kube-controller-manager \
  kube-scheduler=k8s.io/kubernetes/cmd/kube-scheduler kubectl=k8s.io/kubernetes/cmd/kubectl
build etcd "$ETCD_VERSION" etcd "" etcd=go.etcd.io/etcd/server/v3
build kwok "$KWOK_VERSION" kwok "-X sigs.k8s.io/kwok/pkg/consts.Version=v$KWOK_VERSION" \
  kwok=sigs.k8s.io/kwok/cmd/kwok kwokctl=sigs.k8s.io/kwok/cmd/kwokctl
build helm "$HELM_VERSION" helm "-X helm.sh/helm/v3/internal/version.version=v$HELM_VERSION" helm=helm.sh/helm/v3/cmd/helm
build registry "$REGISTRY_VERSION" registry "-X github.com/distribution/distribution/v3/version.version=v$REGISTRY_VERSION" \
  registry=github.com/distribution/distribution/v3/cmd/registry
# NVIDIA's operator is only the baseline of `make bench`: built when asked for by
# name (hack/build-tools.sh nvidia-gpu-operator), never by `make tools`/`make test`.
if [[ $only == nvidia-gpu-operator ]]; then
  build nvidia-gpu-operator "$NVIDIA_GPU_OPERATOR_VERSION" nvidia-gpu-operator "" \
    gpu-operator=github.com/NVIDIA/gpu-operator/cmd/gpu-operator
fi

# Stable names for people: .tools/bin/<binary> links to the pinned build.
mkdir -p "$root/.tools/bin"
for f in "$root"/.tools/*-*/bin/*; do
  [[ -x $f && $f != *.tmp ]] && ln -sfn "$f" "$root/.tools/bin/$(basename "$f")"
done
