package ext4

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// e2fsprogs runs e2fsck or dumpe2fs (the oracles) with args, skipping the
// test when e2fsprogs is not installed.
func e2fsprogs(t *testing.T, tool string, args ...string) *exec.Cmd {
	t.Helper()
	if _, err := exec.LookPath(tool); err != nil {
		t.Skipf("%s not installed (apt-get install e2fsprogs)", tool)
	}
	return exec.Command(tool, args...)
}

// garbageImage creates a file of size bytes that reads like an unwritten
// dm-crypt device: random bytes where metadata may land. The first 256 MiB
// are random, and beyond them the first 16 MiB of every 1 GiB flex group
// (bitmaps and inode tables of its 8 groups) and the first 1 MiB of every
// 128 MiB group; the rest stays sparse, to spare the shared disk.
func garbageImage(t *testing.T, size int64) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "run.img")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	fill := func(off, n int64) {
		n = min(n, size-off)
		if _, err := io.Copy(io.NewOffsetWriter(f, off), io.LimitReader(rand.Reader, n)); err != nil {
			t.Fatal(err)
		}
	}
	fill(0, 256<<20)
	for off := int64(256 << 20); off < size; off += 128 << 20 {
		if off%(1<<30) == 0 {
			fill(off, 16<<20)
		} else {
			fill(off, 1<<20)
		}
	}
	return path
}

// formatFile formats path with Format through an *os.File, as the enclave
// does with the dm-crypt device.
func formatFile(t *testing.T, path string, size int64, opts *Options) Stats {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := Format(context.Background(), f, size, opts)
	if err != nil {
		t.Fatalf("Format(%d): %v", size, err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	return st
}

// fsck runs e2fsck -fn and fails the test unless it exits 0.
func fsck(t *testing.T, path string) {
	t.Helper()
	out, err := e2fsprogs(t, "e2fsck", "-fn", path).CombinedOutput()
	if err != nil {
		t.Fatalf("e2fsck -fn: %v\n%s", err, out)
	}
}

// dumpe2fs returns the fields of dumpe2fs -h.
func dumpe2fs(t *testing.T, path string) map[string]string {
	t.Helper()
	out, err := e2fsprogs(t, "dumpe2fs", "-h", path).Output()
	if err != nil {
		t.Fatalf("dumpe2fs -h: %v\n%s", err, out)
	}
	m := map[string]string{}
	for _, line := range strings.Split(string(out), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if ok {
			m[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	return m
}

// TestFormatOracle formats random-filled images of many sizes and has
// e2fsck -fn and dumpe2fs judge them.
func TestFormatOracle(t *testing.T) {
	e2fsprogs(t, "e2fsck")
	e2fsprogs(t, "dumpe2fs")
	for _, tc := range []struct {
		name string
		size int64
	}{
		{"smallest", MinSize},
		{"smallest+odd", MinSize + 4096*3 + 511},
		{"64MiB", 64 << 20},
		{"one group exactly", 128 << 20},
		{"partial second group", 128<<20 + 40960},
		{"odd multi-group", 300<<20 + 12345},
		{"three flex groups", 2<<30 + 300<<20},
		{"sparse 5GiB", 5 << 30},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.size > 1<<30 && testing.Short() {
				t.Skip("multi-GiB image in -short mode")
			}
			path := garbageImage(t, tc.size)
			st := formatFile(t, path, tc.size, &Options{Label: "run"})
			wantBlocks := uint64(tc.size / BlockSize)
			if st.Blocks != wantBlocks || st.Size != int64(wantBlocks)*BlockSize {
				t.Errorf("Stats.Blocks, Size = %d, %d; want %d blocks", st.Blocks, st.Size, wantBlocks)
			}
			t.Logf("%d bytes: %d blocks, wrote %d bytes in %v", tc.size, st.Blocks, st.BytesWritten, st.Duration)
			fsck(t, path)
			h := dumpe2fs(t, path)
			for _, feat := range []string{"has_journal", "ext_attr", "dir_index", "filetype", "extent", "64bit", "flex_bg",
				"sparse_super", "large_file", "huge_file", "dir_nlink", "extra_isize", "metadata_csum"} {
				if !regexp.MustCompile(`(^| )` + feat + `( |$)`).MatchString(h["Filesystem features"]) {
					t.Errorf("feature %s missing: %q", feat, h["Filesystem features"])
				}
			}
			if strings.Contains(h["Filesystem features"], "needs_recovery") {
				t.Errorf("fresh filesystem needs journal recovery: %q", h["Filesystem features"])
			}
			want := map[string]string{
				"Block size":             strconv.Itoa(BlockSize),
				"Block count":            strconv.FormatUint(wantBlocks, 10),
				"Filesystem volume name": "run",
				"Filesystem state":       "clean",
				"Journal inode":          "8",
				"Inode size":             "256",
				"Journal start":          "0",
				"Checksum type":          "crc32c",
			}
			for k, v := range want {
				if h[k] != v {
					t.Errorf("dumpe2fs %q = %q, want %q", k, h[k], v)
				}
			}
			if tc.size > 128<<20 {
				// The first backup superblock describes the same filesystem.
				out, err := e2fsprogs(t, "e2fsck", "-fn", "-b", "32768", "-B", strconv.Itoa(BlockSize), path).CombinedOutput()
				if err != nil {
					t.Errorf("e2fsck -fn -b 32768: %v\n%s", err, out)
				}
			}
			if jb, err := strconv.Atoi(h["Total journal blocks"]); err != nil || jb < 1024 {
				t.Errorf("journal blocks %q: want at least 1024", h["Total journal blocks"])
			}
		})
	}
}

// TestFormatUUID: a given UUID is the filesystem's, and the default is
// random (two formats differ).
func TestFormatUUID(t *testing.T) {
	e2fsprogs(t, "dumpe2fs")
	id := [16]byte{0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}
	path := garbageImage(t, MinSize)
	formatFile(t, path, MinSize, &Options{UUID: id})
	if got, want := dumpe2fs(t, path)["Filesystem UUID"], "deadbeef-0102-0304-0506-0708090a0b0c"; got != want {
		t.Errorf("UUID = %s, want %s", got, want)
	}
	seen := map[string]bool{}
	for range 2 {
		formatFile(t, path, MinSize, nil)
		seen[dumpe2fs(t, path)["Filesystem UUID"]] = true
	}
	if len(seen) != 2 {
		t.Errorf("two default formats gave UUIDs %v, want two random ones", seen)
	}
}

// TestFormatRejects covers the argument errors callers branch on, and a
// cancelled context.
func TestFormatRejects(t *testing.T) {
	dev := &memDevice{b: make([]byte, MinSize)}
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	for _, tc := range []struct {
		name string
		ctx  context.Context
		size int64
		opts *Options
		want error
	}{
		{"too small", context.Background(), MinSize - 1, nil, ErrTooSmall},
		{"negative", context.Background(), -4096, nil, ErrTooSmall},
		{"long label", context.Background(), MinSize, &Options{Label: strings.Repeat("x", MaxLabel+1)}, ErrLabel},
		{"cancelled", cancelled, MinSize, nil, context.Canceled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, err := Format(tc.ctx, dev, tc.size, tc.opts)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Format: %v, want %v", err, tc.want)
			}
			if st.BytesWritten != 0 {
				t.Errorf("wrote %d bytes before failing", st.BytesWritten)
			}
		})
	}
}

// TestFormatOutOfRange: the library's accesses stay within size, even when
// the device is larger.
func TestFormatOutOfRange(t *testing.T) {
	const size = MinSize
	dev := &memDevice{b: make([]byte, size+1<<20), limit: size}
	if _, err := Format(context.Background(), dev, size, nil); err != nil {
		t.Fatal(err)
	}
}

// TestFormatSuperblockLast: the first block (primary superblock) is the
// last write, after a sync, and a format cut short at any write leaves the
// device without the ext4 magic, so the enclave's blank/no-filesystem
// rule sees no filesystem rather than a half-made one.
func TestFormatSuperblockLast(t *testing.T) {
	var log []string
	dev := &memDevice{b: make([]byte, MinSize), log: &log}
	rand.Read(dev.b)
	dev.b[1080], dev.b[1081] = 0, 0
	if _, err := Format(context.Background(), dev, MinSize, nil); err != nil {
		t.Fatal(err)
	}
	if n := len(log); n < 3 || log[n-2] != "sync" || log[n-1] != "write 0" {
		t.Fatalf("last operations %q, want sync then write 0", log[max(0, len(log)-3):])
	}
	writes := 0
	for _, op := range log {
		if op != "sync" {
			writes++
		}
	}
	for _, cut := range []int{1, 2, writes / 2, writes - 1} {
		t.Run(fmt.Sprintf("cut after %d of %d writes", cut, writes), func(t *testing.T) {
			dev := &memDevice{b: make([]byte, MinSize), failAfter: cut}
			// The library formats errors with %v, so match the text.
			if _, err := Format(context.Background(), dev, MinSize, nil); err == nil || !strings.Contains(err.Error(), errPowerCut.Error()) {
				t.Fatalf("Format: %v, want the injected failure", err)
			}
			if dev.b[1080] == 0x53 && dev.b[1081] == 0xef {
				t.Fatal("ext4 magic on a device whose format was cut short")
			}
		})
	}
}

var errPowerCut = errors.New("injected write failure")

// memDevice is an in-memory Device that fails accesses beyond limit and,
// with failAfter, every write after that many; log records writes ("write
// OFFSET") and syncs.
type memDevice struct {
	b         []byte
	limit     int64
	failAfter int
	writes    int
	log       *[]string
}

func (m *memDevice) Sync() error {
	if m.log != nil {
		*m.log = append(*m.log, "sync")
	}
	return nil
}

func (m *memDevice) ReadAt(p []byte, off int64) (int, error) {
	if err := m.check(p, off); err != nil {
		return 0, err
	}
	return copy(p, m.b[off:]), nil
}

func (m *memDevice) WriteAt(p []byte, off int64) (int, error) {
	if err := m.check(p, off); err != nil {
		return 0, err
	}
	if m.writes++; m.failAfter > 0 && m.writes > m.failAfter {
		return 0, errPowerCut
	}
	if m.log != nil {
		*m.log = append(*m.log, fmt.Sprintf("write %d", off))
	}
	return copy(m.b[off:], p), nil
}

func (m *memDevice) check(p []byte, off int64) error {
	end := off + int64(len(p))
	if off < 0 || end > int64(len(m.b)) || (m.limit > 0 && end > m.limit) {
		return fmt.Errorf("access [%d, %d) out of range", off, end)
	}
	return nil
}
