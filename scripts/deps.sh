#!/usr/bin/env bash
# deps.sh installs everything the build, the unit tests, the oracle tests,
# the benchmarks and the integration VM need on a Debian machine, then
# downloads the Go modules. Run as root (or through sudo); it is idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

# Oracle tools and real peers the tests compare against:
#   cryptsetup-bin  veritysetup, cryptsetup      (verity/, crypt/)
#   libnbd-bin      nbdinfo, nbdcopy             (NBD clients)
#   nbdkit, nbd-server, nbd-client               (NBD peers for tests/bench)
#   e2fsprogs, erofs-utils                       (mkfs/fsck oracles)
#   skopeo, umoci                                (make OCI/docker test archives)
#   qemu-system-x86, busybox-static, cpio, kmod  (integration microVM)
PKGS=(
	ca-certificates git make gcc time bc
	cryptsetup-bin
	libnbd-bin nbdkit nbd-server nbd-client
	e2fsprogs erofs-utils
	skopeo umoci socat
	qemu-system-x86 busybox-static cpio kmod xz-utils zstd
	fio qemu-utils
)

SUDO=
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${PKGS[@]}" >/dev/null

if ! command -v go >/dev/null; then
	echo "deps.sh: Go 1.26 or newer is required (https://go.dev/doc/install)" >&2
	exit 1
fi
go mod download
# staticcheck for 'make lint', pinned so lint results do not drift.
GOBIN="$(go env GOPATH)/bin" go install honnef.co/go/tools/cmd/staticcheck@v0.8.2
echo "deps.sh: ready ($(go version))"
