#!/usr/bin/env bash
# bench-nbd.sh: nbd-parent against nbdkit (file plugin) and nbd-server,
# serving the same file over TCP loopback, one server at a time, measured
# by the same client: fio's nbd engine (libnbd). Prints sequential read and
# write MiB/s (1 MiB requests, 8 in flight), 4 KiB random read IOPS (32 in
# flight, and with 4 fio jobs = 4 connections) and our ratio to each peer,
# then the servers' CPU time per GiB moved for the same three patterns.
# Reports only: the machines are noisy and shared, nothing is asserted.
#
# Environment: BENCH_NBD_SIZE_MIB (file size, default 512),
# BENCH_NBD_RUNTIME (seconds per fio run, default 3), BENCH_NBD_ROUNDS
# (rounds, default 3; the median is reported). About 2 minutes in all.
set -euo pipefail
export PATH="$PATH:/usr/sbin:/sbin"
SIZE_MIB=${BENCH_NBD_SIZE_MIB:-512}
RUNTIME=${BENCH_NBD_RUNTIME:-3}
ROUNDS=${BENCH_NBD_ROUNDS:-3}

# A missing tool skips this benchmark (exit 0) so bench.sh runs the others.
for tool in nbd-parent fio nbdkit nbd-server nbdinfo; do
	if ! command -v "$tool" >/dev/null; then
		echo "bench-nbd: SKIPPED: $tool not found (make build; apt-get install fio nbdkit nbd-server libnbd-bin)"
		exit 0
	fi
done
if ! fio --enghelp 2>/dev/null | grep -qw nbd; then
	echo "bench-nbd: SKIPPED: this fio has no nbd engine"
	exit 0
fi

tmp=$(mktemp -d)
img=$tmp/bench.img
head -c $((SIZE_MIB << 20)) /dev/urandom >"$img"

# A free TCP port on loopback.
freeport() {
	local p
	for p in $(shuf -i 20000-40000 -n 20); do
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi
	done
	echo "bench-nbd: no free port" >&2
	exit 1
}

declare -A PID PORT
start() { # start NAME: runs the server on a fresh port, records PID and PORT
	local port
	port=$(freeport)
	case $1 in
	nbd-parent)
		nbd-parent --listen "tcp://127.0.0.1:$port" --export "bench=$img" --log-level warn &
		PID[$1]=$!
		;;
	nbdkit)
		nbdkit --foreground --ipaddr 127.0.0.1 --port "$port" file "$img" &
		PID[$1]=$!
		;;
	nbd-server)
		cat >"$tmp/nbd-server.conf" <<-CONF
		[generic]
		    port = $port
		    listenaddr = 127.0.0.1
		[bench]
		    exportname = $img
		    flush = true
		    fua = true
		    trim = true
		CONF
		# -d would serve a single connection; daemonized it forks one
		# process per client, so find the daemon by its unique config.
		nbd-server -C "$tmp/nbd-server.conf" 2>/dev/null
		sleep 0.2
		PID[$1]=$(pgrep -o -f "nbd-server -C $tmp/nbd-server.conf")
		;;
	esac
	PORT[$1]=$port
	for _ in $(seq 100); do
		if nbdinfo --size "nbd://127.0.0.1:$port/bench" >/dev/null 2>&1; then return; fi
		sleep 0.1
	done
	echo "bench-nbd: $1 did not start" >&2
	exit 1
}

cleanup() {
	local p
	for p in "${PID[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT

# fio_run URI RW BS DEPTH JOBS FIELD: prints one number from fio's terse
# output (field 7 read KiB/s, 8 read IOPS, 48 write KiB/s).
fio_run() {
	{ fio --name=bench --ioengine=nbd --uri="$1" --rw="$2" --bs="$3" --iodepth="$4" \
		--numjobs="$5" --group_reporting --runtime="$RUNTIME" --time_based \
		--minimal 2>/dev/null | awk -F';' -v f="$6" 'NF > 50 { v = $f } END { print v + 0 }'; } || echo 0
}

# The shared machines are noisy, so the servers take turns: every round
# runs each test on each server (rotating who goes first) and we report
# the median of the rounds. All three stay up; idle ones cost nothing.
servers=(nbd-parent nbdkit nbd-server)
for s in "${servers[@]}"; do start "$s"; done
tests=("seqread read 1M 8 1 7" "seqwrite write 1M 8 1 48" "randread randread 4k 32 1 8" "randread4 randread 4k 32 4 8")
declare -A V R
for ((r = 0; r < ROUNDS; r++)); do
	for t in "${tests[@]}"; do
		read -r key rw bs depth jobs field <<<"$t"
		for ((i = 0; i < ${#servers[@]}; i++)); do
			s=${servers[$(((i + r) % ${#servers[@]}))]}
			V[$s,$key]+="$(fio_run "nbd://127.0.0.1:${PORT[$s]}/bench" "$rw" "$bs" "$depth" "$jobs" "$field") "
		done
	done
done
# CPU cost: server CPU time (user+system, including reaped children, so
# nbd-server's per-connection processes count) for a fixed amount of I/O.
# Unlike throughput, this hardly depends on what else the machine runs.
cputicks() { awk '{ print $14 + $15 + $16 + $17 }' "/proc/$1/stat"; }
cpu_run() { # cpu_run SERVER RW BS DEPTH MiB: prints CPU ms per GiB
	local t0 t1 hz
	hz=$(getconf CLK_TCK)
	t0=$(cputicks "${PID[$1]}")
	fio --name=cpu --ioengine=nbd --uri="nbd://127.0.0.1:${PORT[$1]}/bench" --rw="$2" --bs="$3" \
		--iodepth="$4" --io_size="${5}m" --minimal >/dev/null 2>&1 || true
	sleep 0.3 # let nbd-server reap its connection process
	t1=$(cputicks "${PID[$1]}")
	awk -v d=$((t1 - t0)) -v hz="$hz" -v m="$5" 'BEGIN { printf "%.0f", d * 1000 / hz * 1024 / m }'
}
# Each pattern runs on every server in turn, a different one first each
# time: running one server's three patterns first, straight after the
# timed rounds, charged it alone for the write-back those left behind
# (our seq write row read 350-430 ms against 285 when alternated).
cpu_tests=("cpuseqread read 1M 8 2048" "cpuseqwrite write 1M 8 2048" "cpurandread randread 4k 32 256")
for ((p = 0; p < ${#cpu_tests[@]}; p++)); do
	read -r key rw bs depth mib <<<"${cpu_tests[$p]}"
	for ((i = 0; i < ${#servers[@]}; i++)); do
		s=${servers[$(((i + p) % ${#servers[@]}))]}
		R[$s,$key]=$(cpu_run "$s" "$rw" "$bs" "$depth" "$mib")
	done
done

median() { tr ' ' '\n' | grep . | sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
for k in "${!V[@]}"; do R[$k]=$(median <<<"${V[$k]}"); done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "n/a" }'; }
mib() { awk -v k="$1" 'BEGIN { printf "%.0f", k / 1024 }'; }

echo "NBD over TCP loopback, ${SIZE_MIB} MiB file, median of $ROUNDS rounds of ${RUNTIME}s, client fio $(fio --version) (nbd engine)"
printf '%-28s %12s %12s %12s %14s %14s\n' metric nbd-parent nbdkit nbd-server vs-nbdkit vs-nbd-server
row() { # row LABEL KEY UNIT
	local a=${R[nbd-parent,$2]} b=${R[nbdkit,$2]} c=${R[nbd-server,$2]}
	if [ "$3" = MiB/s ]; then a=$(mib "$a") b=$(mib "$b") c=$(mib "$c"); fi
	printf '%-28s %12s %12s %12s %14s %14s\n' "$1" "$a" "$b" "$c" "$(ratio "$a" "$b")" "$(ratio "$a" "$c")"
}
row "seq read 1M qd8 (MiB/s)" seqread MiB/s
row "seq write 1M qd8 (MiB/s)" seqwrite MiB/s
row "rand read 4K qd32 (IOPS)" randread IOPS
row "rand read 4K 4x qd32 (IOPS)" randread4 IOPS
echo "server CPU per GiB moved (ms; lower is better, so the ratio is theirs/ours):"
cpurow() { # cpurow LABEL KEY
	local a=${R[nbd-parent,$2]} b=${R[nbdkit,$2]} c=${R[nbd-server,$2]}
	printf '%-28s %12s %12s %12s %14s %14s\n' "$1" "$a" "$b" "$c" "$(ratio "$b" "$a")" "$(ratio "$c" "$a")"
}
cpurow "  seq read 1M" cpuseqread
cpurow "  seq write 1M" cpuseqwrite
cpurow "  rand read 4K" cpurandread
