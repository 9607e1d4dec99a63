package cpio

import (
	"bytes"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestGNUCpioList checks that GNU cpio lists our archive with the types,
// modes, owners and targets we wrote.
func TestGNUCpioList(t *testing.T) {
	cpioBin, err := exec.LookPath("cpio")
	if err != nil {
		t.Skip("cpio not installed (apt-get install cpio)")
	}
	var a Archive
	must(t, a.AddFile("usr/bin/tool", 0o755, []byte("hello")))
	must(t, a.AddSymlink("init", "usr/bin/tool"))
	must(t, a.AddDevice("dev/console", 0o600, true, 5, 1))
	var buf bytes.Buffer
	if _, err := a.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(cpioBin, "-t", "-v", "--quiet", "--numeric-uid-gid")
	cmd.Stdin = &buf
	cmd.Env = append(os.Environ(), "TZ=UTC", "LC_ALL=C")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("cpio -t: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	// Whitespace-normalised "cpio -tv" lines; mtime 0 is 1970-01-01.
	want := []string{
		"drwxr-xr-x 2 0 0 0 Jan 1 1970 dev",
		"crw------- 1 0 0 5, 1 Jan 1 1970 dev/console",
		"lrwxrwxrwx 1 0 0 12 Jan 1 1970 init -> usr/bin/tool",
		"drwxr-xr-x 2 0 0 0 Jan 1 1970 usr",
		"drwxr-xr-x 2 0 0 0 Jan 1 1970 usr/bin",
		"-rwxr-xr-x 1 0 0 5 Jan 1 1970 usr/bin/tool",
	}
	if len(lines) != len(want) {
		t.Fatalf("cpio listed %d entries, want %d:\n%s", len(lines), len(want), out)
	}
	for i, w := range want {
		if got := strings.Join(strings.Fields(lines[i]), " "); got != w {
			t.Errorf("line %d: %q, want %q", i, got, w)
		}
	}
}

// TestGNUCpioExtract round-trips an archive through "cpio -i" and checks
// the extracted tree.
func TestGNUCpioExtract(t *testing.T) {
	cpioBin, err := exec.LookPath("cpio")
	if err != nil {
		t.Skip("cpio not installed (apt-get install cpio)")
	}
	var a Archive
	a.ModTime = 1234567890
	big := bytes.Repeat([]byte("0123456789abcdef"), 4099) // not a multiple of 4 after the odd tail
	big = append(big, 'x')
	must(t, a.AddFile("etc/enclave-storage/verity.json", 0o644, []byte(`{"root_hash":"ab"}`)))
	must(t, a.AddFile("usr/bin/nbd-enclave", 0o755, big))
	must(t, a.AddFile("odd", 0o600, []byte("abc")))
	must(t, a.AddSymlink("init", "usr/bin/nbd-enclave"))
	must(t, a.AddDir("tmp", 0o1777|fs.ModeSticky))
	var buf bytes.Buffer
	if _, err := a.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cmd := exec.Command(cpioBin, "-i", "--quiet", "--make-directories", "--preserve-modification-time", "--no-absolute-filenames")
	cmd.Dir = dir
	cmd.Stdin = &buf
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cpio -i: %v\n%s", err, out)
	}
	files := []struct {
		name string
		perm fs.FileMode
		data []byte
	}{
		{"etc/enclave-storage/verity.json", 0o644, []byte(`{"root_hash":"ab"}`)},
		{"usr/bin/nbd-enclave", 0o755, big},
		{"odd", 0o600, []byte("abc")},
	}
	for _, f := range files {
		p := filepath.Join(dir, f.name)
		got, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, f.data) {
			t.Errorf("%s: content differs (%d bytes, want %d)", f.name, len(got), len(f.data))
		}
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != f.perm || fi.ModTime().Unix() != 1234567890 {
			t.Errorf("%s: mode %v mtime %d", f.name, fi.Mode(), fi.ModTime().Unix())
		}
	}
	if target, err := os.Readlink(filepath.Join(dir, "init")); err != nil || target != "usr/bin/nbd-enclave" {
		t.Errorf("init symlink: %q %v", target, err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "tmp")); err != nil || fi.Mode()&fs.ModeSticky == 0 || !fi.IsDir() {
		t.Errorf("tmp: %v %v", fi, err)
	}
}
