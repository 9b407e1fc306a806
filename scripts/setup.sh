#!/usr/bin/env bash
# Sets up a fresh Debian/Ubuntu machine (as root) to build, run and test flowlogd:
# system packages from apt, a supported Node LTS from the npm registry, npm deps,
# vmlinux.h from the running kernel's BTF, the eBPF objects and the addon.
# Idempotent: a second run only rebuilds what changed.
set -euo pipefail
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$top"

NODE_LTS_VERSION=24.21.0   # Node 24 "Krypton" LTS, supported until April 2028

apt_pkgs=(
  clang llvm libbpf-dev libelf-dev zlib1g-dev bpftool pkg-config make g++ python3
  iproute2 conntrack nftables iptables libmnl-dev libnetfilter-conntrack-dev ethtool
  procps iputils-ping clang-format iperf3 pmacct softflowd
  nats-server python3-fluent-logger python3-msgpack openssl
)
missing=()
for p in "${apt_pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  # Wait for another apt/dpkg run (a second checkout's setup) instead of failing.
  apt_opts=(-o DPkg::Lock::Timeout=600)
  apt-get "${apt_opts[@]}" update -qq
  apt-get "${apt_opts[@]}" install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# A supported Node LTS, from the npm registry (the system Node may be past end of life).
node_dir="$top/.tools/node"
if [ ! -x "$node_dir/bin/node" ] || [ "$("$node_dir/bin/node" --version)" != "v$NODE_LTS_VERSION" ]; then
  echo "setup: installing Node $NODE_LTS_VERSION" >&2
  rm -rf "$top/.tools/node-pkg" "$node_dir"
  mkdir -p "$top/.tools/node-pkg"
  arch=$(uname -m | sed 's/x86_64/x64/;s/aarch64/arm64/')
  npm install --silent --no-save --prefix "$top/.tools/node-pkg" "node-linux-$arch@$NODE_LTS_VERSION" >/dev/null
  ln -sfn "$top/.tools/node-pkg/node_modules/node-linux-$arch" "$node_dir"
fi
export PATH="$node_dir/bin:$PATH"

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ] || [ package.json -nt node_modules/.package-lock.json ]; then
  echo "setup: npm ci" >&2
  # `npm ci` installs exactly the lock file and never rewrites it, so a fresh clone's
  # setup leaves `git status` clean. The lock lists every platform's optional packages
  # (biome's), as npm 11 writes it.
  npm ci --ignore-scripts --no-audit --no-fund >/dev/null
fi

make -s -C bpf
npm run --silent build
