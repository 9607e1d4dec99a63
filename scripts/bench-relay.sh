#!/usr/bin/env bash
# bench-relay.sh: throughput of nbdkernel.Relay, the userspace bridge the
# enclave puts between a vsock connection and the kernel NBD client on
# kernels that refuse vsock sockets, against socat doing the same job
# (a relay between two stream sockets), in the same run. Reports only.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v socat >/dev/null; then
	echo "bench-relay: socat not installed (apt-get install socat); skipping"
	exit 0
fi
out=$(go test -run '^$' -bench 'Relay' -benchtime "${BENCH_RELAY_N:-500}x" -count 3 ./nbdkernel/ | grep '^BenchmarkRelay')
echo "$out"
# Median MB/s of the three runs of each variant.
median() { echo "$out" | awk -v v="BenchmarkRelay/$1-" 'index($1, v) == 1 { print $(NF-1) }' | sort -n | sed -n 2p; }
direct=$(median direct) ours=$(median relay) socat=$(median socat)
printf 'relay (ours)  %8.0f MB/s\n' "$ours"
printf 'socat         %8.0f MB/s\n' "$socat"
printf 'direct pair   %8.0f MB/s (no relay, for reference)\n' "$direct"
awk -v a="$ours" -v b="$socat" 'BEGIN { printf "ours/socat    %8.2f\n", a / b }'
