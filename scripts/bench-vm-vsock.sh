#!/usr/bin/env bash
# bench-vm-vsock.sh: nbd-parent against nbdkit (file plugin) over vsock
# loopback (CID 1) in the integration microVM, the production transport,
# which the host cannot loop back. Both serve the same file; the same
# client (fio's nbd engine, libnbd) runs sequential 1 MiB reads and writes
# (8 in flight) and random 4 KiB reads and writes (32 in flight) against
# each in turn, BENCH_VM_VSOCK_ROUNDS rounds (5), medians in MiB/s and
# our ratio to nbdkit.
# The guest side is TestVsockBench/full in nbd/benchvsock_linux_test.go
# (make integration runs only its smoke part). The VM is emulated (TCG)
# unless -vm.accel=kvm works, so the absolute numbers are low: read the
# ratios. BENCH_VM_VSOCK_VARIANTS=1 also serves, in-process, our server
# with each data-path choice switched off in turn (replies from the
# file's mapping, large writes on the reader, the larger vsock receive
# buffer, sends that wait in the kernel for credit), to measure what each
# buys in the same run. Reports only. Extra
# arguments go to scripts/integration.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin:/usr/sbin:/sbin"
for tool in qemu-system-x86_64 nbdkit fio nbdcopy; do
	if ! command -v "$tool" >/dev/null; then
		echo "bench-vm-vsock: SKIPPED: $tool not found (make deps)"
		exit 0
	fi
done
mkdir -p integration/out
log=integration/out/bench-vm-vsock.log # kept for a look at a failed run
load0=$(cut -d' ' -f1-3 /proc/loadavg)
run=TestVsockBench/full
if [ -n "${BENCH_VM_VSOCK_VARIANTS:-}" ]; then run=TestVsockBench/variants; fi
# The guest's test binary stops at -test.timeout (5m by default): give the
# emulated VM more, and the harness too.
# The guest runs on the TSC clock, as an enclave (kvm-clock) does: TCG's
# default, hpet, makes every clock read a system call plus an emulated
# device access, and Go's scheduler reads the clock far more often than
# nbdkit does (2026-12-02, the same build: seq read 1.00x vs 1.14x,
# 4K random writes 0.52x vs 1.05x nbdkit on hpet vs tsc).
rounds=${BENCH_VM_VSOCK_ROUNDS:-5}
export INTEGRATION_TIMEOUT=${INTEGRATION_TIMEOUT:-50m}
if ! scripts/integration.sh -guest.pkgs=./nbd "-guest.run=$run -test.timeout=40m -vsockbench.rounds=$rounds" -vm.timeout=45m \
	-guest.cmds=nbd-parent "-vm.append=clocksource=tsc tsc=reliable" "$@" >"$log" 2>&1; then
	tail -n 60 "$log"
	echo "bench-vm-vsock: the VM run failed; its log: $log" >&2
	exit 1
fi
echo "NBD over vsock loopback in the microVM (kernel $(grep -o 'kernel [^ ,]*' "$log" | head -n 1 | cut -d' ' -f2)); host load before $load0, after $(cut -d' ' -f1-3 /proc/loadavg)"
grep -o 'BENCH-VSOCK.*' "$log" | sed 's/^BENCH-VSOCK //' | grep -v '^rounds \|^clocksource '
grep -o 'BENCH-VSOCK clocksource.*' "$log" | sed 's/^BENCH-VSOCK /guest /'
echo "per round:"
grep -o 'BENCH-VSOCK rounds.*' "$log" | sed 's/^BENCH-VSOCK rounds /  /'
