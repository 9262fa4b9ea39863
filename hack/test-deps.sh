#!/usr/bin/env bash
# Installs the Debian tools the driver image tests need (bats, shellcheck);
# does nothing when they are already on PATH.
set -euo pipefail
missing=()
for tool in bats shellcheck; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
((${#missing[@]} == 0)) && exit 0
sudo=()
((EUID == 0)) || sudo=(sudo)
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
