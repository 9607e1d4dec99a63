package nbd

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
)

func TestOpenFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "run.img")

	// First use: created sparse at the configured size.
	f, err := OpenFile(path, FileOptions{Size: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	if st.Size != 1<<30 || st.Blocks*512 > 1<<20 {
		t.Fatalf("new image: size %d, %d bytes allocated; want 1 GiB, sparse", st.Size, st.Blocks*512)
	}
	if _, err := f.WriteAt([]byte("keep me"), 4096); err != nil {
		t.Fatal(err)
	}

	// A second opener, even in this process, is refused while locked.
	_, err = OpenFile(path, FileOptions{Size: 1 << 30})
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second open: %v, want ErrLocked", err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		opts    FileOptions
		path    string
		wantErr func(error) bool
		size    int64
	}{
		{"reopen same size keeps data", FileOptions{Size: 1 << 30}, path, nil, 1 << 30},
		{"reopen without size", FileOptions{}, path, nil, 1 << 30},
		{"read-only ignores size", FileOptions{ReadOnly: true, Size: 5}, path, nil, 1 << 30},
		{"size mismatch", FileOptions{Size: 2 << 30}, path, func(err error) bool {
			var sm *SizeMismatchError
			return errors.As(err, &sm) && sm.Have == 1<<30 && sm.Want == 2<<30
		}, 0},
		{"missing read-only", FileOptions{ReadOnly: true}, filepath.Join(dir, "nope"), func(err error) bool { return errors.Is(err, os.ErrNotExist) }, 0},
		{"missing without size", FileOptions{}, filepath.Join(dir, "nope"), func(err error) bool { return errors.Is(err, os.ErrNotExist) }, 0},
		{"negative size", FileOptions{Size: -1}, filepath.Join(dir, "neg"), func(err error) bool { return err != nil }, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := OpenFile(tt.path, tt.opts)
			if tt.wantErr != nil {
				if !tt.wantErr(err) {
					t.Fatalf("error %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if f.Size() != tt.size {
				t.Fatalf("size %d, want %d", f.Size(), tt.size)
			}
			b := make([]byte, 7)
			if _, err := f.ReadAt(b, 4096); err != nil || string(b) != "keep me" {
				t.Fatalf("data lost: %q, %v", b, err)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(dir, "neg")); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("failed open left a file behind")
	}
}

// TestReadCached checks the page-cache fast path: data just written is
// cached and read back whole; a read past the end is not served by it.
func TestReadCached(t *testing.T) {
	f, err := OpenFile(filepath.Join(t.TempDir(), "c.img"), FileOptions{Size: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	want := randomBytes(t, 64<<10)
	if _, err := f.WriteAt(want, 8192); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(want))
	if !f.readCached(got, 8192) {
		t.Skip("filesystem under the temp dir does not support RWF_NOWAIT reads")
	}
	if !bytes.Equal(got, want) {
		t.Fatal("cached read returned wrong data")
	}
	if f.readCached(make([]byte, 8192), 1<<20-4096) {
		t.Fatal("short read at end of file reported as a full cached read")
	}
	if !f.rangeCached(8192, int64(len(want))) {
		t.Skip("cachestat(2) unavailable (Linux < 6.5): large reads will not use sendfile")
	}
	if f.rangeCached(1<<19, 4096) {
		t.Error("never-written hole of a sparse file reported as cached")
	}
}

// TestConcurrentWrites checks that writes from many goroutines to one
// image (serialized by File for regular files) all land.
func TestConcurrentWrites(t *testing.T) {
	f, err := OpenFile(filepath.Join(t.TempDir(), "w.img"), FileOptions{Size: 4 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if !f.serial {
		t.Error("regular file not marked for serialized writes")
	}
	const chunk = 64 << 10
	want := randomBytes(t, 4<<20)
	var wg sync.WaitGroup
	for i := 0; i < len(want); i += chunk {
		wg.Go(func() {
			if _, err := f.WriteAt(want[i:i+chunk], int64(i)); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	got := make([]byte, len(want))
	if _, err := f.ReadAt(got, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("data read back differs from what the concurrent writes wrote")
	}
}
