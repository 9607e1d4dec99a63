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
	in := &Initramfs{
		Busybox:  busybox,
		Modules:  []Module{{Path: mod, Params: "major=1"}},
		Commands: map[string]string{"nbd-enclave": busybox},
		Tests:    map[string]TestBinary{"dm": {Path: busybox, Dir: dir}},
		TestArgs: []string{"-test.run=TestX"},
	}
	var buf bytes.Buffer
	if err := in.Write(context.Background(), &buf); err != nil {
		t.Fatal(err)
	}
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
