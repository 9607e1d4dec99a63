#!/usr/bin/env bash
# ensure-deps.sh runs scripts/deps.sh (apt packages, Go modules; root or
# sudo) when a tool the tests or the demo use is missing, and does nothing
# otherwise: "make test" and "make demo" call it, so each is one command on
# a fresh Debian machine and costs nothing once set up.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin:/usr/sbin:/sbin"
missing=
# One tool per package deps.sh installs.
for tool in make gcc bc cryptsetup veritysetup nbdinfo nbdkit nbd-server nbd-client e2fsck mkfs.erofs \
	skopeo umoci socat qemu-system-x86_64 cpio depmod xz zstd fio qemu-img; do
	command -v "$tool" >/dev/null || missing="$missing $tool"
done
[ -x /bin/busybox ] || missing="$missing busybox"
[ -x /usr/bin/time ] || missing="$missing time"
if [ -n "$missing" ]; then
	echo "ensure-deps: installing dependencies (missing:$missing)"
	exec scripts/deps.sh
fi
