#!/usr/bin/env bash
# bench-crypt.sh: time to unlock a LUKS2 header, crypt.Open (through
# crypt/internal/luksopen) against `cryptsetup open --test-passphrase`, on
# the same header with the same PBKDF parameters, one process per unlock
# for both. Prints mean milliseconds and the ratio ours/cryptsetup (target
# <= 1.1). A report, not an assertion: the machines are noisy.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/sbin:/sbin"
RUNS=${RUNS:-3}

if ! command -v cryptsetup >/dev/null; then
	echo "bench-crypt: cryptsetup not installed (apt-get install cryptsetup-bin); skipped"
	exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go build -o "$tmp/luksopen" ./crypt/internal/luksopen
printf 'bench passphrase' >"$tmp/key"

now_ns() { date +%s%N; }

# child_cpu_ms: CPU time (user+sys) of all finished children as of the last
# `times >"$tmp/times"`, in ms. `times` itself must run in this shell, not in
# a $(...) subshell, which has no children of its own.
child_cpu_ms() {
	awk 'NR == 2 {
		split($1, u, /[ms]/); split($2, s, /[ms]/)
		printf "%d", (u[1] * 60 + u[2] + s[1] * 60 + s[2]) * 1000 }' "$tmp/times"
}

# measure CMD...: run CMD $RUNS times; sets wall and cpu to the mean wall
# and CPU milliseconds per run. CPU time is the steadier number on a
# shared machine; wall time includes waiting for a core.
measure() {
	local start end c0 c1
	"$@" >/dev/null # warm caches, and fail early
	times >"$tmp/times"
	c0=$(child_cpu_ms)
	start=$(now_ns)
	for _ in $(seq "$RUNS"); do "$@" >/dev/null; done
	end=$(now_ns)
	times >"$tmp/times"
	c1=$(child_cpu_ms)
	wall=$(( (end - start) / RUNS / 1000000 ))
	cpu=$(( (c1 - c0) / RUNS ))
}

bench() { # name, luksFormat options...
	local name=$1; shift
	local img=$tmp/img
	rm -f "$img"
	truncate -s 20M "$img"
	cryptsetup luksFormat --batch-mode --type luks2 --key-file "$tmp/key" "$@" "$img"
	local ow oc tw tc
	measure cryptsetup open --test-passphrase --key-file "$tmp/key" "$img"
	tw=$wall tc=$cpu
	measure "$tmp/luksopen" -key-file "$tmp/key" "$img"
	ow=$wall oc=$cpu
	awk -v n="$name" -v ow="$ow" -v oc="$oc" -v tw="$tw" -v tc="$tc" 'BEGIN {
		printf "%-40s crypt.Open %5d ms (cpu %5d)   cryptsetup %5d ms (cpu %5d)   ratio wall %.2f cpu %.2f\n",
			n, ow, oc, tw, tc, (tw > 0) ? ow / tw : 0, (tc > 0) ? oc / tc : 0 }'
}

echo "unlock time, mean of $RUNS runs each ($(nproc) CPUs, load $(cut -d' ' -f1 /proc/loadavg))"
bench "argon2id t=4 m=64MiB p=4 (default)" --pbkdf argon2id --pbkdf-force-iterations 4 --pbkdf-memory 65536 --pbkdf-parallel 4
bench "argon2id t=4 m=256MiB p=2" --pbkdf argon2id --pbkdf-force-iterations 4 --pbkdf-memory 262144 --pbkdf-parallel 2
bench "argon2i t=8 m=32MiB p=1" --pbkdf argon2i --pbkdf-force-iterations 8 --pbkdf-memory 32768 --pbkdf-parallel 1
bench "pbkdf2-sha256 500000 iterations" --pbkdf pbkdf2 --hash sha256 --pbkdf-force-iterations 500000

# Userspace aes-xts-plain64 (SectorCipher; in the enclave the kernel's
# dm-crypt does the bulk work, this is the helper for tools that read or
# write a run image outside an enclave) against `openssl speed -evp
# aes-256-xts` on the same 4096-byte units with the same 512-bit key:
# one core (BenchmarkSectorCipher vs openssl) and every core
# (BenchmarkSectorCipherParallel vs openssl -multi N). The two alternate,
# 1 s each, XTS_RUNS times; the line gives the medians and the median of
# the per-round ratios. cryptsetup benchmark would need the kernel's
# AF_ALG interface, which this machine may lack.
XTS_RUNS=${XTS_RUNS:-3}
go test -c -o "$tmp/crypt.test" ./crypt
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
ours_xts() { # benchmark name
	"$tmp/crypt.test" -test.run '^$' -test.bench "^$1\$" -test.benchtime 1s |
		awk '/^Benchmark/ { for (i = 1; i <= NF; i++) if ($(i+1) == "MB/s") print $i }'
}
ssl_xts() { # openssl speed options
	openssl speed -elapsed -seconds 1 -bytes 4096 "$@" -evp aes-256-xts 2>/dev/null |
		awk '/^AES-256-XTS/ { sub(/k$/, "", $2); printf "%.0f\n", $2 / 1000 }'
}
xts_row() { # label, benchmark, openssl speed options...
	local label=$1 bench=$2 o t
	shift 2
	: >"$tmp/ours"; : >"$tmp/ssl"; : >"$tmp/ratio"
	for _ in $(seq "$XTS_RUNS"); do
		o=$(ours_xts "$bench")
		echo "$o" >>"$tmp/ours"
		if command -v openssl >/dev/null; then
			t=$(ssl_xts "$@")
			echo "$t" >>"$tmp/ssl"
			awk -v o="$o" -v t="$t" 'BEGIN { printf "%.2f\n", (t > 0) ? o / t : 0 }' >>"$tmp/ratio"
		fi
	done
	if [ ! -s "$tmp/ssl" ]; then
		printf "%-48s SectorCipher %6.0f MB/s   (openssl not installed)\n" "$label" "$(median <"$tmp/ours")"
		return
	fi
	printf "%-48s SectorCipher %6.0f MB/s   openssl %6.0f MB/s   ratio %.2f (median of %s: %s)\n" \
		"$label" "$(median <"$tmp/ours")" "$(median <"$tmp/ssl")" "$(median <"$tmp/ratio")" \
		"$XTS_RUNS" "$(paste -sd' ' "$tmp/ratio")"
}
echo "aes-xts-plain64 512-bit key, 4096-byte sectors, median of $XTS_RUNS (load $(cut -d' ' -f1 /proc/loadavg))"
xts_row "  one core" BenchmarkSectorCipher
xts_row "  all $(nproc) cores" BenchmarkSectorCipherParallel -multi "$(nproc)"
