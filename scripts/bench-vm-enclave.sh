#!/usr/bin/env bash
# bench-vm-enclave.sh: the enclave I/O table (issue 12). Boots the
# integration microVM RUNS times (default 1) with TestEnclaveIOTable
# (enclave/iotable_linux_test.go): fio on every layer of the enclave's
# storage stack — raw /dev/nbdN (vsock loopback to nbd-parent, through the
# relay nbd-enclave uses), dm-crypt, a file the application writes in its
# overlay root (ext4 on dm-crypt); dm-verity, a file of the image read
# through the overlay (erofs on dm-verity) — and on loop devices over the same
# files with the same dm tables (no NBD) as reference. Prints the median
# of each row over the runs, each layer against the one below it and
# against its local reference. Reports only.
#
#   scripts/bench-vm-enclave.sh              # one run (5-8 minutes under TCG)
#   RUNS=3 scripts/bench-vm-enclave.sh       # medians of three
#   KEEP=DIR scripts/bench-vm-enclave.sh     # keep each run's log in DIR
#
# Extra arguments go to scripts/integration.sh (e.g. -vm.accel=kvm).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${RUNS:-1}
logs=${KEEP:-$(mktemp -d)}
mkdir -p "$logs"
[ -n "${KEEP:-}" ] || trap 'rm -rf "$logs"' EXIT

echo "host: $(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(nproc) cores; VM: QEMU TCG unless -vm.accel says otherwise, 2 vCPUs, 1 GiB"
rows=$logs/rows
: >"$rows"
for i in $(seq "$runs"); do
	echo "run $i/$runs: load before: $(cut -d' ' -f1-3 /proc/loadavg)"
	if ! scripts/integration.sh -guest.pkgs=./enclave -guest.run='^TestEnclaveIOTable$' -guest.cmds=nbd-parent -guest.timeout=10m "$@" >"$logs/run$i.log" 2>&1; then
		echo "bench-vm-enclave: run $i failed (its rows are left out); the end of its log:" >&2
		grep -a 'iotable\|FAIL\|panic:' "$logs/run$i.log" | tail -20 >&2
		continue
	fi
	echo "run $i/$runs: load after:  $(cut -d' ' -f1-3 /proc/loadavg)"
	sed -n 's/.*\(BENCH-ENCLAVE-INFO .*\)/\1/p' "$logs/run$i.log" | sort -u | sed 's/^/  /'
	sed -n 's/.*BENCH-ENCLAVE \([a-z].*\)/\1/p' "$logs/run$i.log" | grep -v '^layer ' >>"$rows" || true
done
[ -s "$rows" ] || { echo "bench-vm-enclave: no BENCH-ENCLAVE rows in the VM's output" >&2; exit 1; }

# Rows: layer pattern MiB/s IOPS lat_us mode parent% relay% busy% below ref.
# Median of each number per (layer, pattern); then ratios of MiB/s.
awk -v runs="$runs" '
function median(key, col,   n, i, j, v, a) {
	n = cnt[key]
	for (i = 1; i <= n; i++) a[i] = val[key, i, col]
	for (i = 2; i <= n; i++) { v = a[i]; for (j = i - 1; j >= 1 && a[j] > v; j--) a[j + 1] = a[j]; a[j + 1] = v }
	return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
{
	key = $1 " " $2
	if (!(key in cnt)) { order[++nk] = key; mode[key] = $6; below[key] = $10; ref[key] = $11 }
	c = ++cnt[key]
	for (col = 3; col <= 9; col++) if (col != 6) val[key, c, col] = $col
}
END {
	for (k = 1; k <= nk; k++) { key = order[k]; mibs[key] = median(key, 3) }
	printf "%-14s %-12s %9s %8s %8s %-8s %7s %7s %6s   %-22s %-22s\n", "layer", "pattern", "MiB/s", "IOPS", "lat_us", "mode", "parent%", "relay%", "busy%", "vs below", "vs local"
	for (k = 1; k <= nk; k++) {
		key = order[k]; split(key, lp, " ")
		vb = "-"; vr = "-"
		if (below[key] != "-" && mibs[below[key] " " lp[2]] > 0) vb = sprintf("%.2fx %s", mibs[key] / mibs[below[key] " " lp[2]], below[key])
		if (ref[key] != "-" && mibs[ref[key] " " lp[2]] > 0) vr = sprintf("%.2fx %s", mibs[key] / mibs[ref[key] " " lp[2]], ref[key])
		printf "%-14s %-12s %9.1f %8.0f %8.0f %-8s %7.0f %7.0f %6.0f   %-22s %-22s\n", lp[1], lp[2], mibs[key], median(key, 4), median(key, 5), mode[key], median(key, 7), median(key, 8), median(key, 9), vb, vr
	}
	printf "(medians of the passing runs of %d; parent%%, relay%%, busy%%: CPU of nbd-parent, of the process holding the relay, of the whole VM, in %% of one vCPU)\n", runs
}' "$rows"
