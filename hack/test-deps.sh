#!/usr/bin/env bash
# Installs the Debian tools the tests need (bats and shellcheck for the driver
# image, apt-utils for apt-ftparchive, which indexes the driver image tests'
# stand-in apt archive, docker-registry as the older registry peer, openssl
# for the TLS tests); does nothing when they are already on PATH.
set -euo pipefail
missing=()
# command:package
for tool in bats:bats shellcheck:shellcheck apt-ftparchive:apt-utils docker-registry:docker-registry openssl:openssl; do
  command -v "${tool%%:*}" >/dev/null || missing+=("${tool#*:}")
done
((${#missing[@]} == 0)) && exit 0
sudo=()
((EUID == 0)) || sudo=(sudo)
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
