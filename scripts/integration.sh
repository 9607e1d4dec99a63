#!/usr/bin/env bash
# integration.sh runs the kernel-level tests (device-mapper, NBD, vsock,
# loop, overlayfs) in a QEMU microVM booting Debian's stock kernel, fetched
# once into integration/.cache. Called by `make integration`.
#
#   scripts/integration.sh                 # in the microVM (TCG, no KVM needed)
#   scripts/integration.sh --host          # directly on this privileged host
#                                          # (also HOST=1, as in make integration HOST=1)
#   scripts/integration.sh -guest.run=TestVerity -guest.pkgs=./dm
#   scripts/integration.sh -vm.accel=kvm    # where /dev/kvm works: much faster
#
# Extra arguments go to the harness (see integration/vm_test.go for flags).
# Needs: qemu-system-x86, busybox-static, kmod, cpio, and apt-get update done
# (the kernel package is downloaded with apt-get download).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin:/usr/sbin:/sbin"

args=()
if [ "${HOST:-}" = 1 ]; then args+=(-host); fi
for a in "$@"; do
	case "$a" in
	--host) args+=(-host) ;;
	*) args+=("$a") ;;
	esac
done

if [[ " ${args[*]-} " != *" -host "* ]]; then
	for tool in qemu-system-x86_64 apt-get dpkg-deb modprobe depmod; do
		command -v "$tool" >/dev/null || { echo "integration.sh: $tool not found (apt-get install qemu-system-x86 kmod)" >&2; exit 1; }
	done
	[ -x /bin/busybox ] || { echo "integration.sh: /bin/busybox missing (apt-get install busybox-static)" >&2; exit 1; }
fi

start=$(date +%s)
rc=0
go test -tags integration ./integration -v -count=1 -timeout "${INTEGRATION_TIMEOUT:-25m}" -args ${args[@]+"${args[@]}"} || rc=$?
echo "integration: finished in $(( $(date +%s) - start ))s, rc=$rc"
exit "$rc"
