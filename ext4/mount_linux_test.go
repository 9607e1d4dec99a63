//go:build linux

package ext4

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/enclave-storage/enclave-storage/integration/itest"
	"golang.org/x/sys/unix"
)

// ext4IOCShutdown is EXT4_IOC_SHUTDOWN (_IOR('X', 125, __u32), fs/ext4/ext4.h)
// and ext4GoingLogFlush its EXT4_GOING_FLAGS_LOGFLUSH: commit the journal,
// then stop all I/O, leaving committed transactions to replay.
const (
	ext4IOCShutdown   = 0x8004587d
	ext4GoingLogFlush = 1
)

// mountLoop formats a random-filled image through a loop device (a block
// device, as dm-crypt is in the enclave) and mounts it. It returns the
// image path, the mount point and the device.
func mountLoop(t *testing.T, size int64) (img, mnt string, loop *itest.Loop) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("loop-mounting needs root")
	}
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		t.Skipf("no loop devices: %v", err)
	}
	img = garbageImage(t, size)
	ctx := context.Background()
	loop, err := itest.AttachLoop(ctx, img, false)
	if err != nil {
		t.Skipf("cannot attach a loop device here: %v", err)
	}
	t.Cleanup(func() { loop.Close() })
	dev, err := os.OpenFile(loop.Path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	st, err := Format(ctx, dev, size, &Options{Label: "run"})
	if err == nil {
		err = dev.Sync()
	}
	dev.Close()
	if err != nil {
		t.Fatalf("Format on %s: %v", loop.Path, err)
	}
	t.Logf("formatted %s (%d bytes): wrote %d bytes in %v", loop.Path, size, st.BytesWritten, st.Duration)
	mnt = t.TempDir()
	mount(t, loop.Path, mnt)
	return img, mnt, loop
}

func mount(t *testing.T, dev, mnt string) {
	t.Helper()
	if err := unix.Mount(dev, mnt, "ext4", 0, ""); err != nil {
		t.Fatalf("mount -t ext4 %s: %v", dev, err)
	}
}

func unmount(t *testing.T, mnt string) {
	t.Helper()
	if err := unix.Unmount(mnt, 0); err != nil {
		t.Fatalf("unmount %s: %v", mnt, err)
	}
}

// writeTree writes directories and files (one directory big enough for
// the kernel to index it with an htree) and fsyncs them.
func writeTree(t *testing.T, root string) map[string][]byte {
	t.Helper()
	want := map[string][]byte{}
	for d := range 3 {
		dir := filepath.Join(root, fmt.Sprintf("d%d", d), "sub")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		n := 5
		if d == 0 {
			n = 400 // > one 4 KiB directory block: dir_index builds an htree
		}
		for i := range n {
			p := filepath.Join(dir, fmt.Sprintf("file-with-a-longish-name-%04d", i))
			want[p] = bytes.Repeat([]byte{byte(i)}, i*37)
		}
	}
	big := filepath.Join(root, "big")
	want[big] = bytes.Repeat([]byte("0123456789abcdef"), 3<<20/16) // several extents' worth
	for p, b := range want {
		f, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write(b); err != nil {
			t.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
	return want
}

func checkTree(t *testing.T, want map[string][]byte) {
	t.Helper()
	for p, b := range want {
		got, err := os.ReadFile(p)
		if err != nil || !bytes.Equal(got, b) {
			t.Errorf("%s: %d bytes, %v; want %d bytes", p, len(got), err, len(b))
		}
	}
}

// TestKernelMount: the kernel mounts the Go-formatted filesystem, files and
// directories written and fsynced in it survive a remount, and e2fsck -fn
// still passes afterwards.
func TestKernelMount(t *testing.T) {
	e2fsprogs(t, "e2fsck")
	img, mnt, loop := mountLoop(t, 200<<20)
	want := writeTree(t, mnt)
	if fi, err := os.Stat(filepath.Join(mnt, "lost+found")); err != nil || fi.Mode() != os.ModeDir|0o700 {
		t.Errorf("lost+found: %v, %v", fi.Mode(), err)
	}
	unmount(t, mnt)
	mount(t, loop.Path, mnt)
	checkTree(t, want)
	unmount(t, mnt)
	fsck(t, img)
}

// TestKernelJournalReplay: after a shutdown that leaves committed
// transactions in the journal (EXT4_IOC_SHUTDOWN with LOGFLUSH), the
// filesystem needs recovery; the kernel replays the journal on the next
// mount, the data is there and e2fsck -fn passes.
func TestKernelJournalReplay(t *testing.T) {
	e2fsprogs(t, "e2fsck")
	e2fsprogs(t, "dumpe2fs")
	img, mnt, loop := mountLoop(t, 64<<20)
	want := writeTree(t, mnt)
	d, err := os.Open(mnt)
	if err != nil {
		t.Fatal(err)
	}
	flag := uint32(ext4GoingLogFlush)
	err = unix.IoctlSetPointerInt(int(d.Fd()), ext4IOCShutdown, int(flag))
	d.Close()
	if err != nil {
		unmount(t, mnt)
		t.Skipf("EXT4_IOC_SHUTDOWN: %v", err)
	}
	unmount(t, mnt)
	if feats := dumpe2fs(t, img)["Filesystem features"]; !strings.Contains(feats, "needs_recovery") {
		t.Fatalf("after shutdown the journal holds nothing to replay: %q", feats)
	}
	mount(t, loop.Path, mnt)
	checkTree(t, want)
	unmount(t, mnt)
	if feats := dumpe2fs(t, img)["Filesystem features"]; strings.Contains(feats, "needs_recovery") {
		t.Errorf("still needs recovery after a mount: %q", feats)
	}
	fsck(t, img)
}
