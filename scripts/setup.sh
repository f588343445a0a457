#!/usr/bin/env bash
# Installs what skiff needs on a Debian 12 node, idempotently: Debian packages, Deno (npm),
# Go modules for the loader and the test peers. Safe to run again; does nothing when all is there.
set -euo pipefail
cd "$(dirname "$0")/.."

DEB_PACKAGES=(
  clang-19 llvm-19 libbpf-dev libbpf1 bpftool linux-libc-dev
  iproute2 iptables nftables ipset ipvsadm conntrack tcpdump socat iperf3 wrk
  etcd-server etcd-client containernetworking-plugins kmod procps util-linux
  systemd iputils-ping netcat-openbsd curl ethtool
)

missing=()
for p in "${DEB_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# etcd's Debian package starts a system etcd where systemd runs; skiff's tests start their own.

if [ ! -x node_modules/.bin/deno ] || [ package.json -nt node_modules/.package-lock.json ]; then
  echo "setup: installing Deno from npm" >&2
  npm ci --no-audit --no-fund --loglevel=error >/dev/null 2>&1 || npm install --no-audit --no-fund --loglevel=error >/dev/null
fi

# Deno's npm: imports, cached from the npm registry per deno.lock.
./node_modules/.bin/deno install --frozen >/dev/null 2>&1 || ./node_modules/.bin/deno install >/dev/null

# Go modules (loader), from the Go module proxy, pinned by go.sum.
if [ -f bpf/loader/go.mod ]; then
  (cd bpf/loader && go mod download)
fi
# The libcni driver the CNI tests build (containernetworking/cni, pinned by its go.sum).
if [ -f tests/cni/libcni/go.mod ]; then
  (cd tests/cni/libcni && go mod download)
fi

# bpffs, needed by the loader and the FFI bridge.
if ! mountpoint -q /sys/fs/bpf; then
  mount -t bpf bpf /sys/fs/bpf
fi
