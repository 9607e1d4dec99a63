#!/usr/bin/env bash
# bench-erofs.sh: time to build a filesystem image from the same ~500 MiB
# tree (5000 files of mixed sizes, nested directories, symlinks, hard
# links) with our erofs writer (erofs/internal/mkerofs), mkfs.erofs
# (uncompressed) and mkfs.ext4 -d. All three read a warm page cache; each
# output is checked (fsck.erofs / e2fsck) and timed separately. Reports,
# not assertions. BENCH_EROFS_MIB and BENCH_EROFS_FILES shrink the tree.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/sbin:/sbin"

MIB=${BENCH_EROFS_MIB:-500}
FILES=${BENCH_EROFS_FILES:-5000}
work=$(mktemp -d "${TMPDIR:-/tmp}/bench-erofs.XXXXXX")
trap 'rm -rf "$work"' EXIT
tree=$work/tree

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a > 0) printf "%.2f", b / a; else print "n/a" }'; }

# The tree: 2% of the files hold 70% of the bytes, 18% hold 25%, the rest
# are small (as in a typical distribution root), spread over 50 directories
# two levels deep. Sizes come from a fixed seed so runs are comparable.
echo "generating a ${MIB} MiB tree of ${FILES} files in $tree"
mkdir -p "$tree"
head -c $((MIB * 1024 * 1024 / 4)) /dev/urandom >"$work/pool" # content pool, reused at offsets
pool=$(stat -c %s "$work/pool")
RANDOM=42
bytes=0
large=$((FILES / 50)) medium=$((FILES * 18 / 100))
large_size=$((MIB * 1024 * 1024 * 70 / 100 / (large > 0 ? large : 1)))
medium_size=$((MIB * 1024 * 1024 * 25 / 100 / (medium > 0 ? medium : 1)))
small_size=$((MIB * 1024 * 1024 * 5 / 100 / (FILES - large - medium)))
for ((i = 0; i < FILES; i++)); do
	d=$tree/d$((i % 10))/s$((i % 50))
	[[ -d $d ]] || mkdir -p "$d"
	if ((i < large)); then
		size=$((large_size / 2 + RANDOM * large_size / 32768))
	elif ((i < large + medium)); then
		size=$((medium_size / 2 + RANDOM * medium_size / 32768))
	else
		size=$((RANDOM * small_size * 2 / 32768))
	fi
	# Large files are written in pool-sized pieces.
	f=$d/f$i.bin
	: >"$f"
	left=$size
	while ((left > 0)); do
		n=$((left < pool ? left : pool))
		dd if="$work/pool" of="$f" bs=1M skip=$(((RANDOM * 32768 + RANDOM) % (pool - n + 1))) count="$n" \
			iflag=skip_bytes,count_bytes oflag=append conv=notrunc status=none
		left=$((left - n))
	done
	bytes=$((bytes + size))
	if ((i % 100 == 0)); then
		ln -s "f$i.bin" "$d/link$i"
		ln "$f" "$d/hard$i"
	fi
done
rm -f "$work/pool"
echo "tree: $(find "$tree" | wc -l) entries, $((bytes / 1024 / 1024)) MiB"
cat $(find "$tree" -type f) >/dev/null # warm the page cache for every run
# Each timed run starts with no dirty pages (the tree's, or the previous
# image's) being written back behind it.
settle() { sync; }

go build -o "$work/mkerofs" ./erofs/internal/mkerofs

settle
t0=$(now)
"$work/mkerofs" -build-time 0 "$work/ours.img" "$tree" 2>/dev/null
t1=$(now)
ours=$(elapsed "$t0" "$t1")
fsck.erofs "$work/ours.img" >/dev/null
ours_size=$(stat -c %s "$work/ours.img")
rm -f "$work/ours.img"

# With a given UUID (imgbuild can derive one from the manifest digest) the
# writer skips hashing every byte.
settle
t0=$(now)
"$work/mkerofs" -build-time 0 -uuid 0123456789abcdef0123456789abcdef "$work/ours.img" "$tree" 2>/dev/null
t1=$(now)
ours_uuid=$(elapsed "$t0" "$t1")
fsck.erofs "$work/ours.img" >/dev/null
rm -f "$work/ours.img"

mkfs_erofs=n/a mkfs_erofs_size=0
if command -v mkfs.erofs >/dev/null; then
	settle
	t0=$(now)
	mkfs.erofs -q -T0 "$work/mkfs.img" "$tree" >/dev/null 2>&1 || mkfs.erofs -T0 "$work/mkfs.img" "$tree" >/dev/null
	t1=$(now)
	mkfs_erofs=$(elapsed "$t0" "$t1")
	fsck.erofs "$work/mkfs.img" >/dev/null
	mkfs_erofs_size=$(stat -c %s "$work/mkfs.img")
	rm -f "$work/mkfs.img"
fi

ext4=n/a ext4_size=0
if command -v mkfs.ext4 >/dev/null; then
	truncate -s $((bytes * 3 / 2 + 64 * 1024 * 1024)) "$work/ext4.img"
	settle
	t0=$(now)
	mkfs.ext4 -q -F -E root_owner=0:0 -d "$tree" "$work/ext4.img"
	t1=$(now)
	ext4=$(elapsed "$t0" "$t1")
	e2fsck -fn "$work/ext4.img" >/dev/null 2>&1
	ext4_size=$(du -B1 "$work/ext4.img" | cut -f1)
	rm -f "$work/ext4.img"
fi

mib=$((bytes / 1024 / 1024))
printf '%-22s %9s %10s %12s %14s\n' tool seconds MiB/s "image MiB" "time / ours"
printf '%-22s %9s %10s %12s %14s\n' "erofs (ours)" "$ours" "$(awk -v m=$mib -v s="$ours" 'BEGIN{printf "%.0f", m/s}')" $((ours_size / 1048576)) "1.00x"
printf '%-22s %9s %10s %12s %14s\n' "erofs (ours, -uuid)" "$ours_uuid" "$(awk -v m=$mib -v s="$ours_uuid" 'BEGIN{printf "%.0f", m/s}')" $((ours_size / 1048576)) "$(ratio "$ours" "$ours_uuid")x"
if [[ $mkfs_erofs != n/a ]]; then
	printf '%-22s %9s %10s %12s %14s\n' "mkfs.erofs" "$mkfs_erofs" "$(awk -v m=$mib -v s="$mkfs_erofs" 'BEGIN{printf "%.0f", m/s}')" $((mkfs_erofs_size / 1048576)) "$(ratio "$ours" "$mkfs_erofs")x"
fi
if [[ $ext4 != n/a ]]; then
	printf '%-22s %9s %10s %12s %14s\n' "mkfs.ext4 -d" "$ext4" "$(awk -v m=$mib -v s="$ext4" 'BEGIN{printf "%.0f", m/s}')" $((ext4_size / 1048576)) "$(ratio "$ours" "$ext4")x"
fi
