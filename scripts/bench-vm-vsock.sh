#!/usr/bin/env bash
# bench-vm-vsock.sh: nbd-parent against nbdkit (file plugin) over vsock
# loopback (CID 1) in the integration microVM, the production transport,
# which the host cannot loop back. Both serve the same file; the same
# client (fio's nbd engine, libnbd) runs sequential 1 MiB reads and writes
# (8 in flight) and random 4 KiB reads and writes (32 in flight) against
# each in turn, three rounds, medians in MiB/s and our ratio to nbdkit.
# The guest side is TestVsockBench/full in nbd/benchvsock_linux_test.go
# (make integration runs only its smoke part). The VM is emulated (TCG)
# unless -vm.accel=kvm works, so the absolute numbers are low: read the
# ratios. Reports only. Extra arguments go to scripts/integration.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin:/usr/sbin:/sbin"
for tool in qemu-system-x86_64 nbdkit fio nbdcopy; do
	if ! command -v "$tool" >/dev/null; then
		echo "bench-vm-vsock: SKIPPED: $tool not found (make deps)"
		exit 0
	fi
done
log=$(mktemp)
trap 'rm -f "$log"' EXIT
load0=$(cut -d' ' -f1-3 /proc/loadavg)
if ! scripts/integration.sh -guest.pkgs=./nbd -guest.run=TestVsockBench/full -guest.cmds=nbd-parent "$@" >"$log" 2>&1; then
	tail -n 60 "$log"
	echo "bench-vm-vsock: the VM run failed" >&2
	exit 1
fi
echo "NBD over vsock loopback in the microVM (kernel $(grep -o 'kernel [^ ,]*' "$log" | head -n 1 | cut -d' ' -f2)); host load before $load0, after $(cut -d' ' -f1-3 /proc/loadavg)"
grep -o 'BENCH-VSOCK.*' "$log" | sed 's/^BENCH-VSOCK //'
