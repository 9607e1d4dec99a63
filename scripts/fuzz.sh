#!/usr/bin/env bash
# fuzz.sh runs each Go fuzz target for a short time (default 10s each).
set -euo pipefail
cd "$(dirname "$0")/.."
t=${1:-10s}
grep -rl --include='*_test.go' '^func Fuzz' . | while read -r f; do
	pkg=./$(dirname "${f#./}")
	for fn in $(grep -o '^func Fuzz[A-Za-z0-9_]*' "$f" | cut -d' ' -f2); do
		echo "== $pkg $fn"
		go test -run '^$' -fuzz "^$fn\$" -fuzztime "$t" -fuzzminimizetime 2s "$pkg"
	done
done
