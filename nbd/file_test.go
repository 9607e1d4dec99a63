package nbd

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
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

// TestView checks the zero-copy path for cached reads: data just written
// is cached and lent whole, a never-written hole of a sparse file is not,
// and Close waits for a pinned view before it unmaps the file.
func TestView(t *testing.T) {
	f, err := OpenFile(filepath.Join(t.TempDir(), "c.img"), FileOptions{Size: 1<<20 + 100})
	if err != nil {
		t.Fatal(err)
	}
	if f.m == nil {
		t.Skip("the image could not be mapped here: reads go through buffers")
	}
	want := randomBytes(t, 64<<10)
	if _, err := f.WriteAt(want, 8192); err != nil {
		t.Fatal(err)
	}
	tail := randomBytes(t, 100)
	if _, err := f.WriteAt(tail, 1<<20); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		off, n int64
		want   []byte // nil: not lent
	}{
		{"cached", 8192, int64(len(want)), want},
		{"unaligned", 8193, 4095, want[1:4096]},
		{"partial last page", 1 << 20, 100, tail},
		{"hole", 1 << 19, 4096, nil},
		{"cached then hole", 8192, 1 << 19, nil},
		{"empty", 8192, 0, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := f.view(tc.off, tc.n)
			if got != nil {
				defer f.unpin()
			}
			switch {
			case tc.want == nil && got != nil:
				t.Fatal("uncached range lent as a view")
			case tc.want != nil && got == nil:
				t.Fatal("cached range not lent")
			case !bytes.Equal(got, tc.want):
				t.Fatal("view holds the wrong data")
			}
		})
	}

	v := f.view(8192, int64(len(want)))
	if v == nil {
		t.Fatal("cached range not lent")
	}
	closed := make(chan error)
	go func() { closed <- f.Close() }()
	time.Sleep(50 * time.Millisecond)
	// Unmapped, this read would fault: Close must wait for unpin.
	if !bytes.Equal(v, want) {
		t.Fatal("pinned view changed while Close waited")
	}
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) while a view was pinned", err)
	default:
	}
	f.unpin()
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	if f.view(8192, 4096) != nil {
		t.Fatal("view lent after Close")
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

// TestTryWriteAt checks which writes the connection's reader may do
// itself: any size to a regular file whose lock is free, none while
// another write holds it, and to a block device (which takes concurrent
// writes) only small ones.
func TestTryWriteAt(t *testing.T) {
	f, err := OpenFile(filepath.Join(t.TempDir(), "w.img"), FileOptions{Size: 4 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	big := randomBytes(t, 1<<20)
	for _, tc := range []struct {
		name   string
		serial bool // a regular file
		held   bool // another write holds the file's lock
		n      int
		want   bool
	}{
		{"file, large", true, false, len(big), true},
		{"file, small", true, false, 4096, true},
		{"file, held", true, true, 4096, false},
		{"device, small", false, false, inlineWriteMax, true},
		{"device, large", false, false, inlineWriteMax + 1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f.serial = tc.serial
			defer func() { f.serial = true }()
			if tc.held {
				f.wmu.Lock()
				defer f.wmu.Unlock()
			}
			clear(big[:1]) // a write that happened changes byte 0 of the file
			if _, err := f.f.WriteAt([]byte{0xff}, 0); err != nil {
				t.Fatal(err)
			}
			done, err := f.tryWriteAt(big[:tc.n], 0)
			if err != nil || done != tc.want {
				t.Fatalf("tryWriteAt = %v, %v; want %v, nil", done, err, tc.want)
			}
			var b [1]byte
			if _, err := f.f.ReadAt(b[:], 0); err != nil {
				t.Fatal(err)
			}
			if wrote := b[0] == 0; wrote != done {
				t.Fatalf("tryWriteAt reported %v but the file was written: %v", done, wrote)
			}
		})
	}
}
