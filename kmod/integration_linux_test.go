//go:build integration && linux

package kmod

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestLoadInVM runs in the integration microVM, whose /init has loaded
// the modules in /lib/modules/*.ko. It unloads nbd and vsock_loopback,
// lays them out with an already-loaded module as imgbuild lays out a
// ramdisk (lib/modules/KVER/... and OrderPath), and checks Load loads the
// two again in order, passes over the loaded one, and names a module that
// fails.
func TestLoadInVM(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root (finit_module)")
	}
	var rel unix.Utsname
	if err := unix.Uname(&rel); err != nil {
		t.Fatal(err)
	}
	release := unix.ByteSliceToString(rel.Release[:])
	root := t.TempDir()
	var order []string
	for _, name := range []string{"dm-mod", "nbd", "vsock_loopback"} {
		b, err := os.ReadFile(filepath.Join("/lib/modules", name+".ko"))
		if err != nil {
			t.Skipf("module %s not in the VM's /lib/modules: %v", name, err)
		}
		p := filepath.Join("lib/modules", release, "kernel", name+".ko")
		if err := os.MkdirAll(filepath.Join(root, filepath.Dir(p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, p), b, 0o444); err != nil {
			t.Fatal(err)
		}
		order = append(order, p)
	}
	if err := os.MkdirAll(filepath.Join(root, filepath.Dir(OrderPath)), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, OrderPath), FormatOrder(order), 0o444); err != nil {
		t.Fatal(err)
	}
	// nbd first: it is the one an earlier test may still hold, and a skip
	// must not leave the VM without vsock_loopback for the tests after
	// this one.
	var unloaded []string
	for _, m := range []string{"nbd", "vsock_loopback"} {
		if err := unix.DeleteModule(m, unix.O_NONBLOCK); err != nil && !errors.Is(err, unix.ENOENT) {
			if len(unloaded) > 0 {
				if _, lerr := Load(context.Background(), root); lerr != nil {
					t.Fatalf("cannot unload %s (%v), and reloading %v failed: %v", m, err, unloaded, lerr)
				}
			}
			refs, _ := os.ReadFile(filepath.Join("/sys/module", m, "refcnt"))
			t.Skipf("cannot unload %s to test loading it (in use, refcnt %s): %v", m, strings.TrimSpace(string(refs)), err)
		}
		unloaded = append(unloaded, m)
	}
	loaded, err := Load(context.Background(), root)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"nbd", "vsock_loopback"}; !slices.Equal(loaded, want) {
		t.Errorf("loaded %v, want %v (dm_mod was loaded already)", loaded, want)
	}
	procMods, err := os.ReadFile("/proc/modules")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"nbd ", "vsock_loopback "} {
		if !strings.Contains(string(procMods), "\n"+m) && !strings.HasPrefix(string(procMods), m) {
			t.Errorf("%s not in /proc/modules after Load", m)
		}
	}
	// Loading again passes over everything.
	if again, err := Load(context.Background(), root); err != nil || len(again) != 0 {
		t.Errorf("second Load: %v, %v; want nothing loaded", again, err)
	}
	// A module that is not one: the error names it.
	bad := filepath.Join("lib/modules", release, "kernel", "not-a-module.ko")
	if err := os.WriteFile(filepath.Join(root, bad), []byte("\x7fELF but not really"), 0o444); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, OrderPath), FormatOrder([]string{bad}), 0o444); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(context.Background(), root); err == nil || !strings.Contains(err.Error(), "not_a_module") {
		t.Errorf("bad module: err %v, want one naming not_a_module", err)
	}
	// No order file: nothing to do.
	if l, err := Load(context.Background(), t.TempDir()); err != nil || l != nil {
		t.Errorf("no order file: %v, %v", l, err)
	}
}
