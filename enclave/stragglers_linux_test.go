//go:build linux

package enclave

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
)

// TestChrootedIn: a process chrooted into a directory is found there, one
// outside it is not (the parent side a test runs next to the enclave).
func TestChrootedIn(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("chroot needs root")
	}
	bb, err := exec.LookPath("busybox")
	if err != nil {
		t.Skip("busybox not installed")
	}
	b, err := os.ReadFile(bb)
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "busybox"), b, 0o755); err != nil {
		t.Fatal(err)
	}
	start := func(chroot string) *exec.Cmd {
		cmd := exec.Command("/busybox", "sleep", "600")
		if chroot == "" {
			cmd.Path = bb
		}
		cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: chroot}
		if err := cmd.Start(); err != nil {
			t.Skipf("cannot start busybox (static busybox needed in the chroot): %v", err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		return cmd
	}
	in, out := start(root), start("")
	got := chrootedIn(root)
	if !slices.Contains(got, in.Process.Pid) {
		t.Errorf("chrootedIn(%s) = %v, lacks the chrooted pid %d", root, got, in.Process.Pid)
	}
	if slices.Contains(got, out.Process.Pid) {
		t.Errorf("chrootedIn(%s) = %v, lists pid %d, which runs outside", root, got, out.Process.Pid)
	}
	if got := chrootedIn(root + "x"); slices.Contains(got, in.Process.Pid) {
		t.Errorf("a sibling directory with the root's name as prefix matched pid %d", in.Process.Pid)
	}
}
