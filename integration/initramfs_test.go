package integration

import (
	"bytes"
	"compress/gzip"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestInitramfs writes an initramfs and lists it with GNU cpio.
func TestInitramfs(t *testing.T) {
	const busybox = "/bin/busybox"
	if err := checkStatic(busybox); err != nil {
		t.Skipf("static busybox needed (apt-get install busybox-static): %v", err)
	}
	cpioBin, err := exec.LookPath("cpio")
	if err != nil {
		t.Skip("cpio not installed (apt-get install cpio)")
	}
	dir := t.TempDir()
	mod := filepath.Join(dir, "dm-mod.ko")
	if err := os.WriteFile(mod, []byte("not really a module"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "testdata", "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "testdata", "sub", "fixture.json"), []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	mods := []Module{{Path: mod, Params: "major=1"}}
	if _, err := exec.LookPath("xz"); err == nil {
		xzMod := filepath.Join(dir, "dm-verity.ko")
		if err := os.WriteFile(xzMod, []byte("compressed module"), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command("xz", xzMod).CombinedOutput(); err != nil {
			t.Fatalf("xz: %v: %s", err, out)
		}
		mods = append(mods, Module{Path: xzMod + ".xz"})
	}
	in := &Initramfs{
		Busybox:  busybox,
		Modules:  mods,
		Commands: map[string]string{"nbd-enclave": busybox},
		Tests:    map[string]TestBinary{"dm": {Path: busybox, Dir: dir}},
		TestArgs: []string{"-test.run=TestX"},
	}
	var buf bytes.Buffer
	if err := in.Write(context.Background(), &buf); err != nil {
		t.Fatal(err)
	}
	archive := bytes.Clone(buf.Bytes())
	zr, err := gzip.NewReader(&buf)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(cpioBin, "-t", "--quiet")
	cmd.Stdin = zr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("cpio -t: %v", err)
	}
	names := map[string]bool{}
	for _, n := range strings.Fields(string(out)) {
		names[n] = true
	}
	if len(mods) > 1 {
		zr, err := gzip.NewReader(bytes.NewReader(archive))
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(cpioBin, "-i", "--quiet", "--to-stdout", "lib/modules/dm-verity.ko")
		cmd.Stdin = zr
		if out, err := cmd.Output(); err != nil || string(out) != "compressed module" {
			t.Errorf("xz module in the initramfs: %q, %v; want it decompressed as lib/modules/dm-verity.ko", out, err)
		}
	}
	for _, want := range []string{"init", "bin/busybox", "bin/nbd-enclave", "tests/dm.test",
		"lib/modules/dm-mod.ko", "pkg/dm/testdata/sub/fixture.json", "etc/modules", "etc/test-args", "dev/console", "proc", "sys", "tmp", "out"} {
		if !names[want] {
			t.Errorf("initramfs lacks %s; has %v", want, names)
		}
	}

	// A dynamically linked binary cannot run there.
	if dyn, err := exec.LookPath("cpio"); err == nil && checkStatic(dyn) != nil {
		in.Tests = map[string]TestBinary{"dyn": {Path: dyn}}
		if err := in.Write(context.Background(), &bytes.Buffer{}); err == nil {
			t.Errorf("initramfs accepted dynamically linked %s", dyn)
		}
	}
}
