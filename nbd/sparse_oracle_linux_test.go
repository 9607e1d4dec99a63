//go:build linux

package nbd

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

	"golang.org/x/sys/unix"
)

// span is one merged run of data or holes.
type span struct {
	Off, Len int64
	Hole     bool
}

// appendSpan appends s, merging it into the last span if both agree.
func appendSpan(m []span, s span) []span {
	if n := len(m); n > 0 && m[n-1].Hole == s.Hole && m[n-1].Off+m[n-1].Len == s.Off {
		m[n-1].Len += s.Len
		return m
	}
	return append(m, s)
}

// seekMap is what SEEK_DATA/SEEK_HOLE say about path, the expectation
// the clients' maps are checked against.
func seekMap(t *testing.T, path string, size int64) []span {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var m []span
	for off := int64(0); off < size; {
		data, err := unix.Seek(int(f.Fd()), off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			data = size
		} else if err != nil {
			t.Fatal(err)
		}
		if data > off {
			m = appendSpan(m, span{off, min(data, size) - off, true})
			off = min(data, size)
			continue
		}
		hole, err := unix.Seek(int(f.Fd()), off, unix.SEEK_HOLE)
		if err != nil {
			t.Fatal(err)
		}
		m = appendSpan(m, span{off, min(hole, size) - off, false})
		off = min(hole, size)
	}
	return m
}

// writeSparse writes random runs of bs bytes at the given multiples of bs
// into path.
func writeSparse(t *testing.T, path string, bs int64, blocks ...int64) {
	t.Helper()
	w, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for _, m := range blocks {
		if _, err := w.WriteAt(randomBytes(t, int(bs)), m*bs); err != nil {
			t.Fatal(err)
		}
	}
}

// TestBlockStatusOracles checks NBD_CMD_BLOCK_STATUS (base:allocation)
// with libnbd's nbdinfo --map and qemu-img map, both against what
// SEEK_DATA says about the file, and that nbdcopy and qemu-img convert,
// which use the map to skip holes, copy the export byte for byte. The
// fragmented layout has more extents than one reply carries.
func TestBlockStatusOracles(t *testing.T) {
	var fragments []int64
	for i := range int64(maxExtents/2 + 1) {
		fragments = append(fragments, 2*i)
	}
	for _, tc := range []struct {
		name   string
		bs     int64
		blocks []int64
	}{
		{"empty", 0, nil},
		{"few runs", 1 << 20, []int64{1, 4, 5, 7}}, // ends with data
		{"fragmented", 4096, fragments},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := startFixture(t, Options{}, runSize)
			writeSparse(t, f.runPath, tc.bs, tc.blocks...)
			want := seekMap(t, f.runPath, runSize)
			if !slices.ContainsFunc(want, func(s span) bool { return s.Hole }) {
				t.Skipf("the file system of %s reports no holes", f.runPath)
			}
			checkMaps(t, "nbd://"+f.tcp+"/run", f.runPath, want)
		})
	}
}

// checkMaps compares the clients' maps of uri with want and copies it.
func checkMaps(t *testing.T, uri, path string, want []span) {
	dir := t.TempDir()

	t.Run("nbdinfo", func(t *testing.T) {
		needTool(t, "nbdinfo")
		out, err := runTool(t, "nbdinfo", "--map", "--json", uri)
		if err != nil {
			t.Fatalf("nbdinfo --map: %v\n%s", err, out)
		}
		var ext []struct {
			Offset, Length int64
			Type           uint32
		}
		if err := json.Unmarshal([]byte(out), &ext); err != nil {
			t.Fatalf("nbdinfo --map --json: %v\n%s", err, out)
		}
		var got []span
		for _, e := range ext {
			if e.Type != 0 && e.Type != stateHole|stateZero {
				t.Errorf("extent %+v: type %d, want 0 or 3", e, e.Type)
			}
			got = appendSpan(got, span{e.Offset, e.Length, e.Type != 0})
		}
		if !slices.Equal(got, want) {
			t.Errorf("nbdinfo --map:\n got %v\nwant %v (SEEK_DATA)", got, want)
		}
	})
	t.Run("qemu-img", func(t *testing.T) {
		needQemuImg(t)
		out, err := runTool(t, "qemu-img", "map", "--output=json", "-f", "raw", uri)
		if err != nil {
			t.Fatalf("qemu-img map: %v\n%s", err, out)
		}
		var ext []struct {
			Start, Length int64
			Zero, Data    bool
		}
		if err := json.Unmarshal([]byte(out), &ext); err != nil {
			t.Fatalf("qemu-img map: %v\n%s", err, out)
		}
		var got []span
		for _, e := range ext {
			if e.Zero == e.Data {
				t.Errorf("extent %+v: want exactly one of zero and data", e)
			}
			got = appendSpan(got, span{e.Start, e.Length, !e.Data})
		}
		if !slices.Equal(got, want) {
			t.Errorf("qemu-img map:\n got %v\nwant %v (SEEK_DATA)", got, want)
		}
	})
	t.Run("copies", func(t *testing.T) {
		needTool(t, "nbdcopy")
		needQemuImg(t)
		src := sum(t, path)
		a, b := filepath.Join(dir, "nbdcopy.img"), filepath.Join(dir, "convert.img")
		if out, err := runTool(t, "nbdcopy", uri, a); err != nil {
			t.Fatalf("nbdcopy: %v\n%s", err, out)
		}
		if out, err := runTool(t, "qemu-img", "convert", "-f", "raw", "-O", "raw", uri, b); err != nil {
			t.Fatalf("qemu-img convert: %v\n%s", err, out)
		}
		for _, p := range []string{a, b} {
			if got := sum(t, p); got != src {
				t.Errorf("%s: sha256 %x, export %x", filepath.Base(p), got, src)
			}
		}
	})
}

func needQemuImg(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("qemu-img"); err != nil {
		t.Skipf("qemu-img not installed (apt-get install qemu-utils): %v", err)
	}
}

// TestSeekExtents checks the bounds of seekExtents against seekMap: at
// most limit extents, none empty, contiguous from off, never past end,
// and past the end of the file (a file shorter than its export) a hole.
func TestSeekExtents(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, 1<<20); err != nil {
		t.Fatal(err)
	}
	writeSparse(t, path, 64<<10, 2, 3, 8, 15) // the last one ends the file
	const end = 2 << 20                       // a second MiB past EOF
	full := seekMap(t, path, 1<<20)
	full = appendSpan(full, span{1 << 20, 1 << 20, true})
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, tc := range []struct {
		off, end int64
		limit    int
	}{
		{0, end, 1024}, {0, end, 1}, {0, end, 2}, {100, 300 << 10, 1024},
		{130 << 10, 131 << 10, 1024}, {900 << 10, end, 1024}, {1<<20 + 5, end, 3},
	} {
		var got []span
		pos := tc.off
		err := seekExtents(f, tc.off, tc.end, tc.limit, func(n int64, hole bool) {
			if n <= 0 {
				t.Errorf("%+v: empty extent at %d", tc, pos)
			}
			got = append(got, span{pos, n, hole})
			pos += n
		})
		if err != nil {
			t.Fatalf("%+v: %v", tc, err)
		}
		if len(got) == 0 || len(got) > tc.limit || pos > tc.end {
			t.Fatalf("%+v: %d extents to %d: %v", tc, len(got), pos, got)
		}
		// Each extent lies within one span of the full map, of its kind.
		for _, g := range got {
			i := slices.IndexFunc(full, func(s span) bool { return s.Off <= g.Off && g.Off < s.Off+s.Len })
			if i < 0 || full[i].Hole != g.Hole || g.Off+g.Len > full[i].Off+full[i].Len {
				t.Errorf("%+v: extent %v is not within the map %v", tc, g, full)
			}
		}
		if len(got) < tc.limit && pos != tc.end {
			t.Errorf("%+v: stopped at %d with %d extents", tc, pos, len(got))
		}
	}
}
