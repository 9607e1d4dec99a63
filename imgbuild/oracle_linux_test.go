//go:build linux

package imgbuild_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/enclave-storage/enclave-storage/imgbuild"
)

// TestOracleKernelMount loop-mounts rootfs.img read-only with the kernel's
// erofs driver (the tree appended after the filesystem is ignored by it)
// and checks what flattening must get right as the kernel reports it:
// ownership, setuid, xattrs, hard links, device numbers.
func TestOracleKernelMount(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("loop-mounting needs root")
	}
	mount, err := exec.LookPath("mount")
	if err != nil {
		t.Skip("mount not installed")
	}
	res := build(t, layout(t, appImage(t, "SERVER v1")), keepDevices)
	mnt := t.TempDir()
	// mount(8) sets up the loop device; doing that by hand (LOOP_CONFIGURE)
	// would be code only this test needs.
	if out, err := exec.Command(mount, "-t", "erofs", "-o", "loop,ro", res.Rootfs, mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot loop-mount erofs here (no loop devices or erofs support?): %v: %s", err, out)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(mnt, 0); err != nil {
			t.Errorf("unmount %s: %v", mnt, err)
		}
	})
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(mnt, "app/server"), &st); err != nil || st.Uid != 1000 || st.Gid != 1000 || st.Mode&0o7777 != 0o750 {
		t.Errorf("app/server: uid %d gid %d mode %o, %v", st.Uid, st.Gid, st.Mode, err)
	}
	if err := unix.Lstat(filepath.Join(mnt, "usr/bin/ping"), &st); err != nil || st.Mode&0o7777 != 0o4755 {
		t.Errorf("usr/bin/ping: mode %o, %v", st.Mode, err)
	}
	buf := make([]byte, 64)
	n, err := unix.Lgetxattr(filepath.Join(mnt, "usr/bin/ping"), "security.capability", buf)
	if err != nil || string(buf[:n]) != capNetRaw {
		t.Errorf("usr/bin/ping security.capability = %q, %v", buf[:max(n, 0)], err)
	}
	var sh, bb unix.Stat_t
	if err := unix.Lstat(filepath.Join(mnt, "bin/sh"), &sh); err != nil {
		t.Fatal(err)
	}
	if err := unix.Lstat(filepath.Join(mnt, "bin/busybox"), &bb); err != nil {
		t.Fatal(err)
	}
	if sh.Ino != bb.Ino || sh.Nlink != 2 {
		t.Errorf("bin/sh ino %d nlink %d, bin/busybox ino %d", sh.Ino, sh.Nlink, bb.Ino)
	}
	if err := unix.Lstat(filepath.Join(mnt, "dev/null"), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFCHR || unix.Major(st.Rdev) != 1 || unix.Minor(st.Rdev) != 3 {
		t.Errorf("dev/null: mode %o rdev %d:%d, %v", st.Mode, unix.Major(st.Rdev), unix.Minor(st.Rdev), err)
	}
	for _, gone := range []string{"etc/old.conf", "var/cache/a", "var/cache/b"} {
		if _, err := os.Lstat(filepath.Join(mnt, gone)); err == nil {
			t.Errorf("%s visible in the mounted image despite its whiteout", gone)
		}
	}
	if b, err := os.ReadFile(filepath.Join(mnt, "usr/lib/libapp.so")); err != nil || string(b) != "LIB" {
		t.Errorf("usr/lib/libapp.so: %q, %v", b, err)
	}
}

func keepDevices(o *imgbuild.Options) { o.Policy.KeepDevices = true }
