#!/usr/bin/env bash
# Install the Debian packages shma needs, when any is missing.  Harmless when
# everything is present.  Needs root (or sudo) only when something is missing.
set -euo pipefail
pkgs=(build-essential clang pkg-config valgrind
      libzmq3-dev libjansson-dev libcmocka-dev liblmdb-dev
      python3 python3-numpy libclang-rt-14-dev)
missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "deps: installing ${missing[*]}"
if [ "$(id -u)" -eq 0 ]; then sudo=(); elif command -v sudo >/dev/null; then sudo=(sudo); else
	echo "deps: missing packages (${missing[*]}) and not root: install them as root" >&2
	exit 1
fi
"${sudo[@]}" apt-get update -q
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q "${missing[@]}"
