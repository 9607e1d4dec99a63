package imgbuild_test

import (
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestOracleVeritysetup checks the appended tree with the real
// veritysetup: "veritysetup verify" reads rootfs.img as both data and hash
// device, as the enclave's dm-verity table will.
func TestOracleVeritysetup(t *testing.T) {
	vs, err := exec.LookPath("veritysetup")
	if err != nil {
		t.Skip("veritysetup not installed (cryptsetup-bin): cannot check the tree with the real tool")
	}
	res := build(t, layout(t, appImage(t, "SERVER v1")), nil)
	p := res.Manifest.Verity
	args := []string{"verify", res.Rootfs, res.Rootfs, hex.EncodeToString(p.RootHash), fmt.Sprintf("--hash-offset=%d", p.HashOffset)}
	if out, err := exec.Command(vs, args...).CombinedOutput(); err != nil {
		t.Fatalf("veritysetup %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	// A wrong root hash must fail, or the check above proves nothing.
	bad := append([]byte(nil), p.RootHash...)
	bad[0] ^= 1
	args[3] = hex.EncodeToString(bad)
	if out, err := exec.Command(vs, args...).CombinedOutput(); err == nil {
		t.Fatalf("veritysetup accepted a wrong root hash:\n%s", out)
	}
}

// TestOracleFsckErofs checks the filesystem part of rootfs.img with
// fsck.erofs and extracts it, then compares what the real tool extracted
// with what the layers say.
func TestOracleFsckErofs(t *testing.T) {
	fsck, err := exec.LookPath("fsck.erofs")
	if err != nil {
		t.Skip("fsck.erofs not installed (erofs-utils): cannot check the image with the real tool")
	}
	res := build(t, layout(t, appImage(t, "SERVER v1")), nil)
	// fsck.erofs reads the filesystem's own size from its superblock; give
	// it exactly the filesystem to be sure the tree is not needed.
	fsOnly := filepath.Join(t.TempDir(), "fs.img")
	b, err := os.ReadFile(res.Rootfs)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(fsOnly, b[:res.Manifest.FSSize], 0o644); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "x")
	args := []string{"--extract=" + dir, fsOnly}
	if os.Geteuid() == 0 {
		args = append([]string{"--preserve"}, args...)
	}
	if out, err := exec.Command(fsck, args...).CombinedOutput(); err != nil {
		t.Fatalf("fsck.erofs %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	for _, c := range []struct{ path, body string }{
		{"bin/sh", "BUSYBOX"}, {"var/cache/c", "c"}, {"usr/lib/libapp.so", "LIB"}, {"app/server", "SERVER v1"},
	} {
		got, err := os.ReadFile(filepath.Join(dir, c.path))
		if err != nil || string(got) != c.body {
			t.Errorf("extracted %s: %q, %v; want %q", c.path, got, err, c.body)
		}
	}
	for _, gone := range []string{"etc/old.conf", "var/cache/a"} {
		if _, err := os.Lstat(filepath.Join(dir, gone)); err == nil {
			t.Errorf("extracted %s, which a whiteout deleted", gone)
		}
	}
	if l, err := os.Readlink(filepath.Join(dir, "lib")); err != nil || l != "usr/lib" {
		t.Errorf("extracted lib -> %q, %v", l, err)
	}
	st, err := os.Stat(filepath.Join(dir, "app/server"))
	if err != nil || st.Mode().Perm() != 0o750 {
		t.Errorf("extracted app/server: %v, %v", st, err)
	}
}
