package nbd

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// These tests drive the server with libnbd's real clients (nbdinfo and
// nbdcopy, Debian package libnbd-bin).

func needTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s not installed (apt-get install libnbd-bin): %v", name, err)
	}
	return p
}

func runTool(t *testing.T, name string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(name, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	return out.String(), err
}

func TestNbdinfoList(t *testing.T) {
	needTool(t, "nbdinfo")
	f := startFixture(t, Options{}, runSize)
	for _, uri := range []string{"nbd://" + f.tcp, "nbd+unix:///?socket=" + f.unix} {
		out, err := runTool(t, "nbdinfo", "--list", uri)
		if err != nil {
			t.Fatalf("nbdinfo --list %s: %v\n%s", uri, err, out)
		}
		for _, want := range []string{
			"export=\"run\"", "description: run volume", fmt.Sprintf("export-size: %d", runSize),
			"export=\"image\"", fmt.Sprintf("export-size: %d", imageSize),
		} {
			if !strings.Contains(out, want) {
				t.Errorf("nbdinfo --list %s: no %q in:\n%s", uri, want, out)
			}
		}
	}
}

// TestNbdinfoCan checks that libnbd sees exactly what we advertise.
func TestNbdinfoCan(t *testing.T) {
	needTool(t, "nbdinfo")
	f := startFixture(t, Options{}, runSize)
	tests := []struct {
		export string
		query  []string
		want   bool
	}{
		{"run", []string{"--can", "trim"}, true},
		{"run", []string{"--can", "flush"}, true},
		{"run", []string{"--can", "fua"}, true},
		{"run", []string{"--can", "zero"}, true},
		{"run", []string{"--can", "multi-conn"}, true},
		{"run", []string{"--can", "write"}, true},
		{"run", []string{"--can", "cache"}, false},
		{"run", []string{"--can", "structured-reply"}, true},
		{"run", []string{"--can", "df"}, false},
		{"image", []string{"--is", "read-only"}, true},
		{"image", []string{"--can", "write"}, false},
		{"image", []string{"--can", "trim"}, false},
		{"image", []string{"--can", "multi-conn"}, true},
		{"", []string{"--can", "write"}, true}, // default export is "run"
	}
	for _, tt := range tests {
		uri := "nbd://" + f.tcp + "/" + tt.export
		args := append(append([]string{}, tt.query...), uri)
		out, err := runTool(t, "nbdinfo", args...)
		var ee *exec.ExitError
		switch {
		case err == nil && !tt.want:
			t.Errorf("nbdinfo %v: true, want false", args)
		case err != nil && !(errors.As(err, &ee) && ee.ExitCode() == 2):
			t.Errorf("nbdinfo %v: %v\n%s", args, err, out)
		case err != nil && tt.want:
			t.Errorf("nbdinfo %v: false, want true", args)
		}
	}
	out, err := runTool(t, "nbdinfo", "--size", "nbd://"+f.tcp+"/image")
	if err != nil || strings.TrimSpace(out) != fmt.Sprint(imageSize) {
		t.Errorf("nbdinfo --size: %q, %v", out, err)
	}
}

// TestNbdcopyRoundTrip copies 256 MiB of random data into the read-write
// export and back out with nbdcopy (multi-conn, many requests in flight).
func TestNbdcopyRoundTrip(t *testing.T) {
	needTool(t, "nbdcopy")
	size := int64(256 << 20)
	if testing.Short() {
		size = 32 << 20
	}
	f := startFixture(t, Options{}, size)
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	dst := filepath.Join(dir, "dst")
	writeRandomFile(t, src, size)
	uri := "nbd://" + f.tcp + "/run"
	start := time.Now()
	if out, err := runTool(t, "nbdcopy", "--flush", src, uri); err != nil {
		t.Fatalf("nbdcopy in: %v\n%s", err, out)
	}
	in := time.Since(start)
	start = time.Now()
	if out, err := runTool(t, "nbdcopy", "nbd+unix:///run?socket="+f.unix, dst); err != nil {
		t.Fatalf("nbdcopy out: %v\n%s", err, out)
	}
	t.Logf("nbdcopy %d MiB: in %v, out %v", size>>20, in.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	want, got, file := sum(t, src), sum(t, dst), sum(t, f.runPath)
	if got != want || file != want {
		t.Fatalf("sha256: source %x, copied out %x, export file %x", want, got, file)
	}

	// Writes to the read-only export fail and change nothing.
	out, err := runTool(t, "nbdcopy", src, "nbd://"+f.tcp+"/image")
	if err == nil {
		t.Fatalf("nbdcopy into the read-only export succeeded:\n%s", out)
	}
	img, _ := os.ReadFile(f.imagePath)
	if !bytes.Equal(img, f.imageBytes) {
		t.Fatal("read-only image modified")
	}
}

func writeRandomFile(t *testing.T, path string, size int64) {
	t.Helper()
	w, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	block := randomBytes(t, 1<<20)
	for off := int64(0); off < size; off += int64(len(block)) {
		block[0], block[1] = byte(off>>20), byte(off>>28) // no two MiB alike
		if _, err := w.Write(block); err != nil {
			t.Fatal(err)
		}
	}
}

func sum(t *testing.T, path string) [32]byte {
	t.Helper()
	r, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	h := sha256.New()
	if _, err := io.Copy(h, r); err != nil {
		t.Fatal(err)
	}
	return [32]byte(h.Sum(nil))
}
