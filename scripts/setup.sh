#!/usr/bin/env bash
# Installs what skiff needs on a Debian 12 node, idempotently: Debian packages, Deno (npm),
# Go modules for the loader and the test peers. Safe to run again; does nothing when all is there.
set -euo pipefail
cd "$(dirname "$0")/.."

DEB_PACKAGES=(
  clang-19 llvm-19 libbpf-dev libbpf1 bpftool linux-libc-dev
  iproute2 iptables nftables ipset ipvsadm conntrack tcpdump socat iperf3 wrk
  etcd-server etcd-client containernetworking-plugins kmod procps util-linux
  systemd iputils-ping netcat-openbsd curl ethtool python3
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

# Deno trusts only its bundled roots unless told otherwise; npm, Go and apt use the system store.
# Trust both, so a machine whose TLS proxy CA is installed system-wide reaches the npm registry.
export DENO_TLS_CA_STORE="${DENO_TLS_CA_STORE:-mozilla,system}"

if [ ! -x node_modules/.bin/deno ] || [ package.json -nt node_modules/.package-lock.json ]; then
  echo "setup: installing Deno from npm" >&2
  npm ci --no-audit --no-fund --loglevel=error >/dev/null 2>&1 || npm install --no-audit --no-fund --loglevel=error >/dev/null
fi

# Deno's npm: imports, cached from the npm registry per deno.lock. A failed install also removes
# node_modules/.bin/deno, so say why here rather than fail later with "No such file".
if ! out=$(./node_modules/.bin/deno install --frozen 2>&1); then
  echo "setup: deno install --frozen failed; retrying without --frozen. It said:" >&2
  sed -e 's/\x1b\[[0-9;]*m//g' <<<"$out" | tail -8 >&2
  ./node_modules/.bin/deno install >/dev/null
fi

# Go modules of every Go module in the repo (the loader, the libcni driver the CNI tests build,
# …), from the Go module proxy, pinned by each go.sum.
command -v go >/dev/null || { echo "setup: go not found on PATH (Go >= 1.25 is needed)" >&2; exit 1; }
# An older Go (>= 1.21) fetches the toolchain go.mod asks for from the Go module proxy.
export GOTOOLCHAIN="${GOTOOLCHAIN:-auto}"
while IFS= read -r mod; do
  (cd "$(dirname "$mod")" && go mod download)
done < <(find . \( -path ./node_modules -o -path ./build -o -path ./.git \) -prune -o -name go.mod -print)

# bpffs, needed by the loader and the FFI bridge.
if ! mountpoint -q /sys/fs/bpf; then
  mount -t bpf bpf /sys/fs/bpf
fi
