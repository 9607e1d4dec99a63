#!/usr/bin/env bash
# bench-verity.sh: verity.Format (imgbuild verity format) against
# veritysetup format on the same 1 GiB file, same salt, same machine, same
# run; then the peak resident memory of formatting a 4 GiB (sparse) image.
# Each tool runs 3 times after a warm-up read; the best time counts.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MIB=${VERITY_BENCH_MIB:-1024}
work=$(mktemp -d "${TMPDIR:-/var/tmp}/bench-verity.XXXXXX")
trap 'rm -rf "$work"' EXIT
imgbuild=${IMGBUILD:-bin/imgbuild}
[ -x "$imgbuild" ] || CGO_ENABLED=0 go build -o "$imgbuild" ./cmd/imgbuild

head -c "$((SIZE_MIB << 20))" /dev/urandom >"$work/data.img"
cat "$work/data.img" >/dev/null # page cache warm for both tools
salt=$(printf '%064x' 42)

best() { # best wall time in seconds of 3 runs of "$@"
	local b=999999 s e t
	for _ in 1 2 3; do
		rm -f "$work/hash.img"
		s=$(date +%s.%N)
		"$@" >/dev/null
		e=$(date +%s.%N)
		t=$(echo "$e - $s" | bc -l)
		if (($(echo "$t < $b" | bc -l))); then b=$t; fi
	done
	echo "$b"
}

ours=$(best "$imgbuild" verity format "$work/data.img" "$work/hash.img" --salt "$salt")
root_ours=$("$imgbuild" verity format "$work/data.img" "$work/hash.img" --salt "$salt" --uuid 00000000-0000-4000-8000-000000000000 | awk '/Root hash/{print $3}')
if command -v veritysetup >/dev/null; then
	theirs=$(best veritysetup format "$work/data.img" "$work/hash.img" --salt "$salt")
	root_theirs=$(veritysetup format "$work/data.img" "$work/hash.img" --salt "$salt" --uuid 00000000-0000-4000-8000-000000000000 | awk '/Root hash/{print $3}')
	[ "$root_ours" = "$root_theirs" ] || { echo "root hashes differ: $root_ours vs $root_theirs" >&2; exit 1; }
else
	theirs=
	echo "veritysetup not installed: no ratio"
fi
printf 'verity format, %d MiB, sha256 4096/4096, %d cores\n' "$SIZE_MIB" "$(nproc)"
printf '  %-22s %8.3f s  %8.1f MiB/s\n' "verity.Format" "$ours" "$(echo "$SIZE_MIB / $ours" | bc -l)"
if [ -n "$theirs" ]; then
	printf '  %-22s %8.3f s  %8.1f MiB/s\n' "veritysetup format" "$theirs" "$(echo "$SIZE_MIB / $theirs" | bc -l)"
	printf '  ratio (veritysetup time / ours): %.2fx   (target >= 1.5x)\n' "$(echo "$theirs / $ours" | bc -l)"
fi

# Memory: a 4 GiB sparse image, tree in a separate file.
rm -f "$work/data.img" "$work/hash.img"
truncate -s 4G "$work/big.img"
if [ -x /usr/bin/time ]; then
	rss=$(/usr/bin/time -f '%M' "$imgbuild" verity format "$work/big.img" "$work/hash.img" 2>&1 >/dev/null | tail -1)
	printf '  peak RSS formatting 4 GiB: %d KiB   (limit 65536 KiB)\n' "$rss"
fi
