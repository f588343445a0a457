#!/usr/bin/env bash
# Builds flanneld (github.com/flannel-io/flannel) from the Go module proxy into build/flannel/bin
# for the wire-compatibility lab test. Bounded (10 min). The proxy answers 403 for one module
# flannel imports (tencentcloud-sdk-go/tencentcloud/vpc v1.3.188, the tencent-vpc backend), so
# the module source is copied and that one backend import dropped; etcd + vxlan are untouched.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION="${FLANNEL_VERSION:-v0.28.10}"
OUT=build/flannel
[ -x "$OUT/bin/flanneld" ] && exit 0
mkdir -p "$OUT/bin"
timeout 120 go mod download "github.com/flannel-io/flannel@$VERSION"
SRC="$(go env GOMODCACHE)/github.com/flannel-io/flannel@$VERSION"
rm -rf "$OUT/src" && cp -r "$SRC" "$OUT/src" && chmod -R u+w "$OUT/src"
sed -i '/pkg\/backend\/tencentvpc"/d' "$OUT/src/main.go"
# flannel's udp backend is cgo: without a C compiler go drops cgo and the build fails. A fresh
# node has no gcc, but has clang-19 (setup.sh installs it).
if [ -z "${CC:-}" ] && ! command -v cc >/dev/null; then export CC=clang-19; fi
export CGO_ENABLED=1
(cd "$OUT/src" && timeout 600 nice go build -mod=mod -o ../bin/flanneld .)
echo "built $OUT/bin/flanneld ($VERSION)"
