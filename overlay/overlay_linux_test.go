//go:build linux

package overlay

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("overlay mounts need root")
	}
}

// layout makes lower, upper, work and merged directories under a fresh
// temporary directory and returns the Options and the merged directory.
func layout(t *testing.T, files map[string]string) (Options, string) {
	t.Helper()
	dir := t.TempDir()
	o := Options{
		Lower: []string{filepath.Join(dir, "lower")},
		Upper: filepath.Join(dir, "upper"),
		Work:  filepath.Join(dir, "work"),
	}
	merged := filepath.Join(dir, "merged")
	for _, d := range []string{o.Lower[0], o.Upper, o.Work, merged} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, content := range files {
		p := filepath.Join(o.Lower[0], name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if target, ok := strings.CutPrefix(content, "symlink:"); ok {
			err := os.Symlink(target, p)
			if err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return o, merged
}

func TestMountWritesGoToUpper(t *testing.T) {
	needRoot(t)
	o, merged := layout(t, map[string]string{"etc/os-release": "ID=test\n", "etc/gone": "x"})
	if err := Mount(merged, o, 0); err != nil {
		t.Fatalf("Mount: %v", err)
	}
	mounted := true
	defer func() {
		if mounted {
			unix.Unmount(merged, unix.MNT_DETACH)
		}
	}()
	if !isMountPoint(merged) {
		t.Fatal("merged is not a mount point after Mount")
	}
	if b, err := os.ReadFile(filepath.Join(merged, "etc/os-release")); err != nil || string(b) != "ID=test\n" {
		t.Fatalf("lower file through overlay: %q, %v", b, err)
	}
	if err := os.WriteFile(filepath.Join(merged, "etc/new"), []byte("written"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(merged, "etc/gone")); err != nil {
		t.Fatal(err)
	}

	if b, err := os.ReadFile(filepath.Join(o.Upper, "etc/new")); err != nil || string(b) != "written" {
		t.Fatalf("upper/etc/new: %q, %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(o.Lower[0], "etc/new")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("write reached the lower layer: %v", err)
	}
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(o.Upper, "etc/gone"), &st); err != nil {
		t.Fatalf("no whiteout for a deleted lower file: %v", err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 {
		t.Fatalf("whiteout mode %#o rdev %d, want a 0/0 character device", st.Mode, st.Rdev)
	}
	if _, err := os.Stat(filepath.Join(o.Lower[0], "etc/gone")); err != nil {
		t.Fatalf("delete reached the lower layer: %v", err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := Unmount(ctx, merged); err != nil {
		t.Fatalf("Unmount: %v", err)
	}
	mounted = false
	if isMountPoint(merged) {
		t.Fatal("still mounted after Unmount")
	}
	if err := Unmount(ctx, merged); err != nil {
		t.Fatalf("second Unmount of an unmounted directory: %v", err)
	}
}

func TestMountRefusesBadOptions(t *testing.T) {
	needRoot(t)
	o, merged := layout(t, nil)
	o.Work = ""
	if err := Mount(merged, o, 0); err == nil {
		unix.Unmount(merged, unix.MNT_DETACH)
		t.Fatal("Mount accepted an upper directory without a work directory")
	}
}

// busyboxRoot builds an image-like lower layer holding a static busybox,
// with the absolute symlinks real images have.
func busyboxRoot(t *testing.T, extra map[string]string) (*Root, Options) {
	t.Helper()
	bb, err := exec.LookPath("busybox")
	if err != nil {
		t.Skip("busybox not installed (apt-get install busybox-static)")
	}
	if out, _ := exec.Command("file", "-L", bb).Output(); bytes.Contains(out, []byte("dynamically")) {
		t.Skip("busybox is dynamically linked; the test needs busybox-static")
	}
	files := map[string]string{
		"bin":        "symlink:/usr/bin", // resolved inside the root, not on the host
		"usr/bin/sh": "symlink:/usr/bin/busybox",
		"etc/passwd": "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001:app:/home/app:/bin/sh\n",
		"etc/group":  "root:x:0:\napp:x:1001:\nstaff:x:50:\n",
	}
	for k, v := range extra {
		files[k] = v
	}
	o, merged := layout(t, files)
	data, err := os.ReadFile(bb)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(o.Lower[0], "usr/bin/busybox"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	r, err := NewRoot(merged, o)
	if err != nil {
		t.Fatalf("NewRoot: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := r.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return r, o
}

func TestRootRunsChrootedApplication(t *testing.T) {
	needRoot(t)
	r, o := busyboxRoot(t, nil)
	if err := r.BindSystem(); err != nil {
		t.Fatalf("BindSystem: %v", err)
	}
	tests := []struct {
		name string
		p    Process
		want string
	}{
		{"root writes to the upper layer",
			Process{Args: []string{"sh", "-c", "echo hello > /data; cat /data; test -c /dev/null && test -e /proc/self/status && test -d /sys/kernel && echo ok"},
				Env: []string{"PATH=/bin"}},
			"hello\nok\n"},
		{"named user, working directory",
			Process{Args: []string{"/bin/sh", "-c", "echo $(id -u):$(id -g) $(pwd)"}, User: "app", Dir: "/tmp"},
			"1000:1001 /tmp\n"},
		{"default PATH, system mounts",
			Process{Args: []string{"sh", "-c", `echo "$PATH"; stat -f -c %T /tmp /run /dev; test -d /dev/pts && test -d /proc/1 && echo ok`}},
			DefaultPath + "\ntmpfs\ntmpfs\n" + fsType(t, "/dev") + "\nok\n"},
		{"numeric user, named group",
			Process{Args: []string{"sh", "-c", "echo $(id -u):$(id -g)"}, User: "4242:staff"},
			"4242:50\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.p.Dir != "" {
				os.MkdirAll(filepath.Join(r.Dir(), tt.p.Dir), 0o777)
			}
			cmd, err := r.Command(context.Background(), tt.p, time.Second)
			if err != nil {
				t.Fatalf("Command: %v", err)
			}
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("application: %v: %s", err, out)
			}
			if string(out) != tt.want {
				t.Fatalf("output %q, want %q", out, tt.want)
			}
		})
	}
	if b, err := os.ReadFile(filepath.Join(o.Upper, "data")); err != nil || string(b) != "hello\n" {
		t.Fatalf("upper/data = %q, %v", b, err)
	}
}

func TestRootCommandCancel(t *testing.T) {
	needRoot(t)
	r, _ := busyboxRoot(t, map[string]string{"usr/bin/sleep": "symlink:busybox"})
	ctx, cancel := context.WithCancel(context.Background())
	cmd, err := r.Command(ctx, Process{Args: []string{"sleep", "600"}}, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	cancel()
	err = cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGTERM {
		t.Fatalf("Wait after cancel: %v, want death by SIGTERM", err)
	}
}

func TestRootErrors(t *testing.T) {
	needRoot(t)
	r, _ := busyboxRoot(t, map[string]string{
		"proc":         "symlink:/etc",
		"usr/bin/data": "not executable",
	})
	if err := r.BindSystem(); err == nil || !strings.Contains(err.Error(), "symlink") {
		t.Fatalf("BindSystem over a symlinked /proc: %v, want a refusal", err)
	}
	ctx := context.Background()
	for _, p := range []Process{
		{},
		{Args: []string{"missing"}},
		{Args: []string{"data"}},
		{Args: []string{"/usr/bin/data"}},
		{Args: []string{"sh"}, User: "nobody"},
		{Args: []string{"sh"}, User: "app:nogroup"},
	} {
		if _, err := r.Command(ctx, p, 0); err == nil {
			t.Errorf("Command(%+v) succeeded", p)
		}
	}
	// The host's /bin/sh must not satisfy a lookup in an image without one.
	if _, err := r.LookPath("busybox", "/sbin"); err == nil {
		t.Error("LookPath found busybox in an image PATH that lacks it")
	}
}

// fsType is busybox stat -f's name for the filesystem at p on this host.
func fsType(t *testing.T, p string) string {
	t.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs(p, &st); err != nil {
		t.Fatal(err)
	}
	if st.Type != unix.TMPFS_MAGIC { // devtmpfs is a tmpfs too
		t.Skipf("%s on this host is not a tmpfs (type %#x)", p, st.Type)
	}
	return "tmpfs"
}
