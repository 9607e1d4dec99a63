//go:build integration && linux

package itest

import (
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/mdlayher/vsock"
	"golang.org/x/sys/unix"
)

// The rig tests prove the VM offers what the kernel-level tests need.

func TestModulesLoaded(t *testing.T) {
	// /sys/module/NAME exists for loaded modules and for built-in code with
	// parameters; both are fine.
	for _, m := range []string{"dm_mod", "dm_verity", "dm_crypt", "nbd", "vsock", "vsock_loopback", "overlay", "loop", "ext4", "erofs"} {
		t.Run(m, func(t *testing.T) { NeedPath(t, filepath.Join("/sys/module", m)) })
	}
}

func TestDeviceNodes(t *testing.T) {
	tests := []struct {
		path string
		mode uint32
	}{
		{"/dev/mapper/control", unix.S_IFCHR},
		{"/dev/nbd0", unix.S_IFBLK},
		{"/dev/loop-control", unix.S_IFCHR},
		{"/dev/vsock", unix.S_IFCHR},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			var st unix.Stat_t
			err := unix.Stat(tt.path, &st)
			Need(t, tt.path, err)
			if st.Mode&unix.S_IFMT != tt.mode {
				t.Errorf("%s has mode %#o, want type %#o", tt.path, st.Mode, tt.mode)
			}
		})
	}
}

// TestVsockLoopback listens on the local CID (1) and connects to itself
// through vsock_loopback, the stand-in for the enclave-parent link.
func TestVsockLoopback(t *testing.T) {
	l, err := vsock.ListenContextID(vsock.Local, 0, nil)
	Need(t, "vsock listener on CID 1", err)
	defer l.Close()
	port := l.Addr().(*vsock.Addr).Port

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			errc <- err
			return
		}
		defer c.Close()
		_, err = io.Copy(c, c) // echo
		errc <- err
	}()

	c, err := vsock.DialContext(ctx, vsock.Local, port, nil)
	if err != nil {
		t.Fatalf("dial CID 1 port %d: %v", port, err)
	}
	defer c.Close()
	if remote := c.RemoteAddr().(*vsock.Addr); remote.ContextID != vsock.Local || remote.Port != port {
		t.Errorf("connected to %v, want CID 1 port %d", remote, port)
	}
	want := bytes.Repeat([]byte("vsock "), 10000)
	go func() {
		c.Write(want)
		c.CloseWrite()
	}()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("echo returned %d bytes, want the %d sent", len(got), len(want))
	}
	if err := <-errc; err != nil {
		t.Errorf("server: %v", err)
	}
}

// TestArtifacts leaves files for the host: one in the 9p share, one on the
// scratch drive.
func TestArtifacts(t *testing.T) {
	t.Run("share", func(t *testing.T) {
		dir := OutDir()
		if dir == "" {
			Need(t, "artifact directory ($"+EnvOut+")", os.ErrNotExist)
		}
		path := filepath.Join(dir, ArtifactName)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(ArtifactData), 0o644); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("scratch", func(t *testing.T) {
		dev := ScratchDevice()
		if dev == "" {
			t.Skip("no scratch drive (host mode)")
		}
		f, err := os.OpenFile(dev, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.WriteAt([]byte(ScratchMessage), 0); err != nil {
			t.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
	})
}

func TestOverlayMount(t *testing.T) {
	NeedPath(t, "/sys/module/overlay")
	dir := t.TempDir()
	for _, d := range []string{"lower", "upper", "work", "merged"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "lower", "a"), []byte("lower"), 0o644); err != nil {
		t.Fatal(err)
	}
	merged := filepath.Join(dir, "merged")
	opts := "lowerdir=" + filepath.Join(dir, "lower") + ",upperdir=" + filepath.Join(dir, "upper") + ",workdir=" + filepath.Join(dir, "work")
	if err := unix.Mount("overlay", merged, "overlay", 0, opts); err != nil {
		t.Fatalf("mount overlay: %v", err)
	}
	defer unix.Unmount(merged, 0)
	if err := os.WriteFile(filepath.Join(merged, "a"), []byte("upper"), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "lower", "a")); string(b) != "lower" {
		t.Errorf("lower file changed to %q", b)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "upper", "a")); string(b) != "upper" {
		t.Errorf("copy-up file holds %q, want %q", b, "upper")
	}
}

// TestHostTools runs the host's dynamically linked peers and oracles from
// the read-only host share: each must start and print its version, which
// proves the loader, its libraries and ld.so.cache resolve in the guest.
func TestHostTools(t *testing.T) {
	for _, tt := range []struct{ name, arg, want string }{
		{"nbdkit", "--version", "nbdkit"},
		{"nbdinfo", "--version", "nbdinfo"},
		{"fio", "--version", "fio-"},
		{"veritysetup", "--version", "veritysetup"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := NeedHostTool(t, tt.name)
			out, err := exec.Command(p, tt.arg).CombinedOutput()
			if err != nil || !bytes.Contains(out, []byte(tt.want)) {
				t.Fatalf("%s %s: %v\n%s", p, tt.arg, err, out)
			}
			t.Logf("%s: %s", p, bytes.TrimSpace(out))
		})
	}
}
