#!/usr/bin/env bash
# bench-imgbuild.sh: end-to-end "imgbuild --in IMAGE" on a generated
# ~500 MiB OCI image (two uncompressed layers: 400 large random files, then
# ~12,800 small ones), with imgbuild's own per-step times, next to the
# same work done by the real tools on the same tree in the same run:
#   erofs step   vs  mkfs.erofs (uncompressed) of the unpacked tree
#   verity step  vs  veritysetup format --hash-offset (tree appended)
#   whole build  vs  tar -x of the layers + mkfs.erofs + veritysetup
# Ours does more (digest checks, whiteouts, ownership without root) and
# never touches the tree on disk. Ratios are "times as fast" (the tools'
# time over ours: above 1 we are faster); peak RSS is /usr/bin/time's
# maximum resident set of each process. Reports, not assertions.
# BENCH_IMGBUILD_MIB changes the size; IMGBUILD names another binary;
# TMPDIR places the work directory (it needs about 4x the image's size).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/bin:$PATH:/usr/sbin:/sbin"
IMGBUILD=${IMGBUILD:-imgbuild}
for t in "$IMGBUILD" mkfs.erofs veritysetup sha256sum /usr/bin/time; do
	command -v "$t" >/dev/null || { echo "bench-imgbuild: $t not found (make build; scripts/deps.sh)" >&2; exit 1; }
done

MIB=${BENCH_IMGBUILD_MIB:-500}
work=$(mktemp -d "${TMPDIR:-/tmp}/bench-imgbuild.XXXXXX")
trap 'rm -rf "$work"' EXIT
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a > 0) printf "%.2f", b / a; else print "n/a" }'; } # ours, tools
# rss FILE CMD...: runs CMD, appending its peak RSS (KiB) to FILE.
rss() { local f=$1; shift; /usr/bin/time -f %M -a -o "$f" "$@"; }
maxrss() { awk 'BEGIN { m = 0 } $1 + 0 > m { m = $1 + 0 } END { printf "%.0f", m / 1024 }' "$@"; } # MiB

# The tree: 80% of the bytes in 4 MiB files, 20% in 8 KiB files.
tree=$work/tree
mkdir -p "$tree/opt/big" "$tree/usr/share/small"
big=$((MIB * 4 / 5)) small=$((MIB - MIB * 4 / 5))
head -c "${big}M" /dev/urandom | split -b 4M -a 4 - "$tree/opt/big/f"
head -c "${small}M" /dev/urandom | split -b 8k -a 5 - "$tree/usr/share/small/f"
nfiles=$(find "$tree" -type f | wc -l)
echo "image: ${MIB} MiB in $nfiles files, two uncompressed layers; load average $(cut -d" " -f1-3 /proc/loadavg)"

# The OCI layout, by hand: two layer blobs, a config, a manifest, index.json.
lay=$work/layout
mkdir -p "$lay/blobs/sha256"
tarflags=(--sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$tree")
tar "${tarflags[@]}" -cf "$work/l1.tar" opt
tar "${tarflags[@]}" -cf "$work/l2.tar" usr
blob() { # file -> "digest size", moved into the layout
	local d s
	d=$(sha256sum "$1" | cut -d' ' -f1)
	s=$(stat -c %s "$1")
	mv "$1" "$lay/blobs/sha256/$d"
	echo "$d $s"
}
read -r d1 s1 < <(blob "$work/l1.tar")
read -r d2 s2 < <(blob "$work/l2.tar")
printf '{"architecture":"amd64","os":"linux","config":{"Entrypoint":["/bin/true"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s","sha256:%s"]}}' "$d1" "$d2" >"$work/config.json"
read -r dc sc < <(blob "$work/config.json")
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:%s","size":%s},{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:%s","size":%s}]}' \
	"$dc" "$sc" "$d1" "$s1" "$d2" "$s2" >"$work/manifest.json"
read -r dm sm < <(blob "$work/manifest.json")
printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"bench"}}]}' "$dm" "$sm" >"$lay/index.json"
echo '{"imageLayoutVersion":"1.0.0"}' >"$lay/oci-layout"
sync

# Ours.
t0=$(now)
SOURCE_DATE_EPOCH=0 rss "$work/rss.ours" "$IMGBUILD" --in "oci:$lay:bench" --out "$work/out" --salt 00 --progress plain >"$work/ours.txt" 2>"$work/ours.log"
t1=$(now)
ours_total=$(elapsed "$t0" "$t1")
step() { awk -v s="$1" '$1 == "time" && $2 == s { sub("s$", "", $3); print $3 }' "$work/ours.txt"; }
fs_size=$(sed -n 's/^rootfs:.*(erofs \([0-9]*\) bytes.*/\1/p' "$work/ours.txt")
rootfs_size=$(stat -c %s "$work/out/rootfs.img")

# The real tools on the same input: unpack, mkfs.erofs, veritysetup.
rm -rf "$tree"
t0=$(now)
mkdir "$work/unpacked"
rss "$work/rss.tar" tar -xf "$lay/blobs/sha256/$d1" -C "$work/unpacked"
rss "$work/rss.tar" tar -xf "$lay/blobs/sha256/$d2" -C "$work/unpacked"
t1=$(now)
rss "$work/rss.mkfs" mkfs.erofs --quiet -T0 "$work/ref.img" "$work/unpacked" >/dev/null
t2=$(now)
ref_fs=$(stat -c %s "$work/ref.img")
rss "$work/rss.verity" veritysetup format "$work/ref.img" "$work/ref.img" --hash-offset="$ref_fs" --salt=00 >/dev/null
t3=$(now)
ref_unpack=$(elapsed "$t0" "$t1") ref_mkfs=$(elapsed "$t1" "$t2") ref_verity=$(elapsed "$t2" "$t3")
ref_total=$(elapsed "$t0" "$t3")

printf '\n%-28s %10s %10s %8s\n' "step" "ours (s)" "tools (s)" "x as fast"
printf '%-28s %10s %10s %8s\n' "open image" "$(step open)" "-" "-"
printf '%-28s %10s %10s %8s\n' "flatten layers / tar -x" "$(step flatten)" "$ref_unpack" "$(ratio "$(step flatten)" "$ref_unpack")"
printf '%-28s %10s %10s %8s\n' "erofs / mkfs.erofs" "$(step erofs)" "$ref_mkfs" "$(ratio "$(step erofs)" "$ref_mkfs")"
printf '%-28s %10s %10s %8s\n' "verity / veritysetup" "$(step verity)" "$ref_verity" "$(ratio "$(step verity)" "$ref_verity")"
printf '%-28s %10s %10s %8s\n' "manifest" "$(step manifest)" "-" "-"
printf '%-28s %10s %10s %8s\n' "end to end (wall)" "$ours_total" "$ref_total" "$(ratio "$ours_total" "$ref_total")"
printf '%-28s %10s %10s\n' "peak RSS, MiB (tools: max)" "$(maxrss "$work/rss.ours")" "$(maxrss "$work/rss.tar" "$work/rss.mkfs" "$work/rss.verity")"
printf '%-28s %10s %10s\n' "  tar -x / mkfs / verity" "" "$(maxrss "$work/rss.tar")/$(maxrss "$work/rss.mkfs")/$(maxrss "$work/rss.verity")"
printf '%-28s %10s %10s\n' "filesystem bytes" "$fs_size" "$ref_fs"
printf '%-28s %10s %10s\n' "rootfs.img bytes (+verity)" "$rootfs_size" "$(stat -c %s "$work/ref.img")"
awk -v m="$MIB" -v t="$ours_total" 'BEGIN { if (t > 0) printf "imgbuild throughput: %.1f MiB/s end to end\n", m / t }'
