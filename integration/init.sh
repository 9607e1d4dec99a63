#!/bin/busybox sh
# /init of the integration microVM (see package integration). It loads the
# modules, runs every test binary in /tests and reports on the console.
/bin/busybox --install -s /bin
export PATH=/bin HOME=/tmp TMPDIR=/tmp
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs -o mode=1777 tmpfs /tmp
token=$(sed -n 's/.*integration\.token=\([A-Za-z0-9]*\).*/\1/p' /proc/cmdline)
uptime() { cut -d' ' -f1 /proc/uptime; }
say() { echo "@@$token $*"; }
say "INTEGRATION-START uptime=$(uptime)"

rc=0
while read -r mod params; do
	[ -n "$mod" ] || continue
	if ! insmod "$mod" $params; then
		say "RESULT insmod-$(basename "$mod" .ko) FAIL 0"
		rc=1
	fi
done < /etc/modules
say "INTEGRATION-MODULES uptime=$(uptime)"
# Loopback networking: tests that serve NBD over TCP on 127.0.0.1 run here too.
ip link set lo up || { say "RESULT loopback FAIL 0"; rc=1; }

mkdir -p /out
if [ -n "$(ls /sys/bus/virtio/drivers/9pnet_virtio/ 2>/dev/null | grep virtio)" ]; then
	if ! mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 out /out; then
		say "RESULT mount-9p FAIL 0"
		rc=1
	fi
fi
# The host's root, read-only, when the harness shares it: its /usr
# (merged-/usr Debian: every program and library) is bound on /usr so the
# host's dynamically linked tools run here, found by itest.HostTool under
# $INTEGRATION_HOST_TOOLS. They stay off PATH: tests that look tools up on
# PATH keep seeing only busybox and our static binaries.
if grep -qsx hostroot /sys/bus/virtio/drivers/9pnet_virtio/*/mount_tag; then
	mkdir -p /host /usr
	if mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144,ro hostroot /host &&
		mount --bind /host/usr /usr; then
		[ -e /lib64 ] || ln -s usr/lib64 /lib64
		mkdir -p /lib
		[ -e /lib/x86_64-linux-gnu ] || ln -s /usr/lib/x86_64-linux-gnu /lib/x86_64-linux-gnu
		cp /host/etc/ld.so.cache /etc/ 2>/dev/null
		export INTEGRATION_HOST_TOOLS=/usr/sbin:/usr/bin
	else
		say "RESULT mount-hostroot FAIL 0"
		rc=1
	fi
fi
export INTEGRATION_REQUIRE=1 INTEGRATION_OUT=/out
# The first virtio-blk drive is the harness's scratch disk.
[ -e /sys/block/vda ] && export INTEGRATION_SCRATCH=/dev/vda
args=$(cat /etc/test-args 2>/dev/null)

for t in /tests/*.test; do
	[ -x "$t" ] || continue
	name=$(basename "$t" .test)
	start=$(uptime)
	mkdir -p "/pkg/$name"
	# A hung test panics with its goroutines after -test.timeout instead of
	# eating the whole VM budget (go test's 10m default is not the binary's).
	# 10m: the e2e package's scenarios take 5 to 7 minutes under TCG on a
	# loaded host.
	(cd "/pkg/$name" && "$t" -test.v -test.timeout=10m $args) 2>&1
	r=$?
	secs=$(awk -v a="$start" -v b="$(uptime)" 'BEGIN { printf "%.2f", b - a }')
	if [ "$r" -eq 0 ]; then
		say "RESULT $name PASS $secs"
	else
		say "RESULT $name FAIL $secs"
		rc=1
	fi
done

sync
umount /out 2>/dev/null
say "INTEGRATION-DONE rc=$rc uptime=$(uptime)"
poweroff -f
