#!/usr/bin/env bash
# Installs the Debian tools the tests need (bats and shellcheck for the driver
# image, docker-registry as the older registry peer, openssl for the TLS tests);
# does nothing when they are already on PATH.
set -euo pipefail
missing=()
for tool in bats shellcheck docker-registry openssl; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
((${#missing[@]} == 0)) && exit 0
sudo=()
((EUID == 0)) || sudo=(sudo)
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
