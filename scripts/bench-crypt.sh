#!/usr/bin/env bash
# bench-crypt.sh: time to unlock a LUKS2 header, crypt.Open (through
# crypt/internal/luksopen) against `cryptsetup open --test-passphrase`, on
# the same header with the same PBKDF parameters, one process per unlock
# for both. Prints mean milliseconds and the ratio ours/cryptsetup (target
# <= 1.1). A report, not an assertion: the machines are noisy.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/sbin:/sbin"
RUNS=${RUNS:-5}

if ! command -v cryptsetup >/dev/null; then
	echo "bench-crypt: cryptsetup not installed (apt-get install cryptsetup-bin); skipped"
	exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go build -o "$tmp/luksopen" ./crypt/internal/luksopen
printf 'bench passphrase' >"$tmp/key"

now_ns() { date +%s%N; }

# mean_ms CMD...: run CMD $RUNS times, print the mean wall time in ms.
mean_ms() {
	local start end
	"$@" >/dev/null # warm caches, and fail early
	start=$(now_ns)
	for _ in $(seq "$RUNS"); do "$@" >/dev/null; done
	end=$(now_ns)
	echo $(( (end - start) / RUNS / 1000000 ))
}

bench() { # name, luksFormat options...
	local name=$1; shift
	local img=$tmp/img
	rm -f "$img"
	truncate -s 20M "$img"
	cryptsetup luksFormat --batch-mode --type luks2 --key-file "$tmp/key" "$@" "$img"
	local ours theirs
	theirs=$(mean_ms cryptsetup open --test-passphrase --key-file "$tmp/key" "$img")
	ours=$(mean_ms "$tmp/luksopen" -key-file "$tmp/key" "$img")
	awk -v n="$name" -v o="$ours" -v t="$theirs" 'BEGIN {
		r = (t > 0) ? o / t : 0
		printf "%-44s crypt.Open %6d ms   cryptsetup %6d ms   ratio %.2f\n", n, o, t, r }'
}

echo "unlock time, mean of $RUNS runs each ($(nproc) CPUs, load $(cut -d' ' -f1 /proc/loadavg))"
bench "argon2id t=4 m=64MiB p=4 (crypt default)" --pbkdf argon2id --pbkdf-force-iterations 4 --pbkdf-memory 65536 --pbkdf-parallel 4
bench "argon2id t=4 m=256MiB p=2" --pbkdf argon2id --pbkdf-force-iterations 4 --pbkdf-memory 262144 --pbkdf-parallel 2
bench "argon2i t=8 m=32MiB p=1" --pbkdf argon2i --pbkdf-force-iterations 8 --pbkdf-memory 32768 --pbkdf-parallel 1
bench "pbkdf2-sha256 500000 iterations" --pbkdf pbkdf2 --hash sha256 --pbkdf-force-iterations 500000
