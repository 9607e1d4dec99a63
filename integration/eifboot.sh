#!/itest/bin/busybox sh
# Test-only /init of the EIF-boot scenario (see eifboot.go). It plays the
# parent instance inside the VM, over the vsock loopback: loads the kernel
# modules, mounts the host's share, starts nbd-parent and the heartbeat
# echo, then execs the EIF's own init, which stays PID 1.
bb=/itest/bin/busybox
p=/itest/bin
n=0
while read -r mod params; do
	[ -n "$mod" ] || continue
	if $bb insmod "$mod" $params; then n=$((n + 1)); else echo "eifboot: insmod $mod failed"; fi
done < /itest/modules
echo "eifboot: test ramdisk loaded $n modules"
$bb mkdir -p /itest/share
$bb mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 out /itest/share || echo "eifboot: mounting the 9p share failed"
# The vsock library opens /dev/vsock when it starts listening. devtmpfs
# is detached again before the exec, so nbd-enclave mounts its own /dev.
$bb mount -t devtmpfs dev /dev
# Through tee, so their lines reach the console as they are written, in
# order with nbd-enclave's.
$p/heartbeat-echo --port 9000 2>&1 | $bb tee /itest/echo.log &
$p/nbd-parent --listen vsock://:10809 \
	--export image=/itest/share/rootfs.img,ro --export run=/itest/share/run.img,size=64M 2>&1 | $bb tee /itest/parent.log &
i=0
until $bb grep -q msg=listening /itest/parent.log 2>/dev/null && $bb grep -q msg=listening /itest/echo.log 2>/dev/null; do
	i=$((i + 1))
	if [ $i -gt 300 ] || $bb grep -q level=ERROR /itest/parent.log /itest/echo.log 2>/dev/null; then
		echo "eifboot: the parent side did not start"
		break
	fi
	$bb sleep 0.2
done
$bb umount -l /dev
init=$($bb cat /itest/eif-init)
# The kernel's leftover cmdline words ("nomodules") reach init as argv;
# pass them on, as if the kernel had started the EIF's /init itself.
echo "eifboot: exec $init as PID $$"
exec "$init" "$@"
