#!/usr/bin/env bash
# bench.sh runs every scripts/bench-*.sh in turn. Each prints our numbers
# next to the real tool's, measured in the same run, and their ratio. The
# machines are noisy: these are reports, never assertions. The microVM's
# benchmarks (scripts/bench-vm-*.sh) take minutes: make bench-vm runs them.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/bin:$PATH:/usr/sbin:/sbin"
for b in scripts/bench-*.sh; do
	case "$b" in scripts/bench-vm-*) continue ;; esac # microVM benchmarks: make bench-vm
	echo "== $b"
	bash "$b"
	echo
done
