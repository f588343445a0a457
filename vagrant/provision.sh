#!/usr/bin/env bash
# Provisions one skiff VM: Node.js/npm and Go from Debian, the project's own installer, etcd on
# node 1, then the agent as a systemd unit through `skiff install`.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
# Debian 12's own Go (1.19) is too old for cilium/ebpf v0.22 (Go >= 1.25). Go >= 1.21 fetches the
# toolchain go.mod asks for from the Go module proxy (golang.org/toolchain), so take 1.23 from
# bookworm-backports and let GOTOOLCHAIN=auto do the rest.
echo "deb http://deb.debian.org/debian bookworm-backports main" >/etc/apt/sources.list.d/backports.list
apt-get update -qq
apt-get install -y -qq nodejs npm git >/dev/null
apt-get install -y -qq -t bookworm-backports golang-1.23-go >/dev/null
ln -sf /usr/lib/go-1.23/bin/go /usr/local/bin/go
export GOTOOLCHAIN=auto
echo 'GOTOOLCHAIN=auto' >/etc/environment.d/90-go.conf 2>/dev/null || true
modprobe ip_vs 2>/dev/null || true

cd /skiff
bash scripts/setup.sh

if [ "${SKIFF_NODE_INDEX}" = "1" ]; then
  ip=$(ip -4 -o addr show | awk -v c="${SKIFF_UNDERLAY_CIDR%.*}" 'index($4, c) == 1 { sub("/.*", "", $4); print $4 }')
  cat >/etc/default/etcd <<CONF
ETCD_LISTEN_CLIENT_URLS=http://${ip}:2379,http://127.0.0.1:2379
ETCD_ADVERTISE_CLIENT_URLS=http://${ip}:2379
CONF
  systemctl enable --now etcd
fi

mkdir -p /etc/skiff
cat >/etc/skiff/config.json <<CONF
{
  "nodeName": "$(hostname)",
  "uplink": { "cidr": "${SKIFF_UNDERLAY_CIDR}" },
  "store": { "type": "etcd", "endpoints": ["${SKIFF_ETCD}"] },
  "network": { "Network": "10.244.0.0/16", "Backend": { "Type": "vxlan" } },
  "dataplane": "auto"
}
CONF
./node_modules/.bin/deno task skiff install
systemctl daemon-reload
systemctl enable --now skiff
