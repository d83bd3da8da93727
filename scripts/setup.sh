#!/usr/bin/env bash
# Installs every Debian 12 package that building, testing and benchmarking sluice needs
# (apt-get update runs once, only when something is missing), then configures the meson
# build directory. Idempotent: a second run changes nothing. Called by run.sh and test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

PKGS=(
  # build
  g++ meson ninja-build pkg-config
  libdpdk-dev libhyperscan-dev libipsec-mb-dev libconfig++-dev
  libyaml-cpp-dev nlohmann-json3-dev libcpp-httplib-dev libre2-dev libcli11-dev libssl-dev
  libnuma-dev libpcap-dev libbsd-dev libgoogle-perftools-dev
  # tests and benchmarks
  libgtest-dev libgmock-dev googletest libbenchmark-dev
  dpdk iproute2 iputils-ping ethtool curl netcat-openbsd python3 procps clang-format
  # benchmarks: dpdk-testpmd (Debian 12 ships it in dpdk-dev), perf's stdbuf (coreutils);
  # perf/l7_vs_peers.sh: the L7 peers haproxy and nginx-light, the load generator wrk
  dpdk-dev coreutils haproxy nginx-light wrk
)

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "setup: missing packages: ${missing[*]}; run as root (sudo) to install them" >&2
    exit 1
  fi
  echo "setup: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if [ ! -f build/build.ninja ]; then
  meson setup build --buildtype=release
fi
