#!/usr/bin/env bash
# Installs the Debian 12 packages tensortape needs; already installed ones are skipped
# so that a prepared machine needs neither root nor network.
#   bash tools/install-deps.sh [--data] [--bench]
set -euo pipefail

base=(g++ cmake make git xtensor-dev libxsimd-dev xtl-dev doctest-dev zlib1g-dev pkg-config libopenmpi-dev openmpi-bin)
data=(dataset-fashion-mnist)
bench=(python3-torch python3-numpy libopenblas-dev libbenchmark-dev time)

groups=(base)
for arg in "$@"; do
  case "$arg" in
    --data) groups+=(data) ;;
    --bench) groups+=(bench) ;;
    -h|--help) echo "usage: $0 [--data] [--bench]"; exit 0 ;;
    *) echo "$0: unknown option '$arg'" >&2; exit 2 ;;
  esac
done

installed() {
  [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" == *"install ok installed"* ]]
}

missing=()
for group in "${groups[@]}"; do
  declare -n packages="$group"
  need=()
  for package in "${packages[@]}"; do
    installed "$package" || need+=("$package")
  done
  if ((${#need[@]})); then
    echo "$group: to install: ${need[*]}"
  else
    echo "$group: all installed"
  fi
  missing+=("${need[@]}")
  unset -n packages
done

((${#missing[@]})) || exit 0

if ((EUID == 0)); then
  as_root=()
elif command -v sudo >/dev/null; then
  as_root=(sudo)
else
  echo "$0: need root (or sudo) to install: ${missing[*]}" >&2
  exit 1
fi
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
  apt-get install -y -q --no-install-recommends "${missing[@]}"
