package erofs

import (
	"context"
	"io"
	"runtime"
	"testing"

	"github.com/enclave-storage/enclave-storage/fstree"
)

// repeated is size bytes of a repeating 1 MiB pattern, produced by memcpy
// so that gigabytes cost little CPU.
type repeated struct{ size int64 }

func (r repeated) Size() int64 { return r.size }
func (r repeated) Open() (io.ReadCloser, error) {
	blk := make([]byte, 1<<20)
	for i := range blk {
		blk[i] = byte(i*31 + i>>8)
	}
	return io.NopCloser(io.LimitReader(&cycler{blk: blk}, r.size)), nil
}

type cycler struct {
	blk []byte
	off int
}

func (c *cycler) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		k := copy(p[n:], c.blk[c.off:])
		n += k
		c.off = (c.off + k) % len(c.blk)
	}
	return n, nil
}

// sparseImage keeps the first blocks of an image (superblock and
// metadata) and drops the rest, so a multi-gigabyte image can be written
// and its metadata read back without the disk space.
type sparseImage struct {
	keep    []byte
	written int64
}

func (s *sparseImage) WriteAt(p []byte, off int64) (int, error) {
	if off < int64(len(s.keep)) {
		copy(s.keep[off:], p)
	}
	s.written += int64(len(p))
	return len(p), nil
}

// TestHugeFileBoundedMemory writes a tree with a file over 4 GiB (64-bit
// i_size, extended inode) and checks that the writer's allocations stay
// far below the content size.
func TestHugeFileBoundedMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 4 GiB through the hasher; skipped with -short")
	}
	const size = 4<<30 + 12345
	tr := fstree.New()
	if err := tr.Insert("huge", &fstree.Inode{Type: fstree.TypeRegular, Perm: 0o644, ModTime: t0, Content: repeated{size}}); err != nil {
		t.Fatal(err)
	}
	if err := tr.Insert("small", &fstree.Inode{Type: fstree.TypeRegular, Perm: 0o644, ModTime: t0, Content: fstree.Bytes("x")}); err != nil {
		t.Fatal(err)
	}
	img := &sparseImage{keep: make([]byte, 64*BlockSize)}
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	st, err := Write(context.Background(), img, tr, Options{BuildTime: t0})
	if err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 64<<20 {
		t.Errorf("writing %d bytes of content allocated %d bytes", int64(size), alloc)
	}
	if st.Size < size || st.Size%BlockSize != 0 || img.written != st.Size {
		t.Fatalf("image of %d bytes (%d written) for %d bytes of content", st.Size, img.written, int64(size))
	}
	fsys, err := Open(&memImage{img.keep}, st.Size)
	if err != nil {
		t.Fatal(err)
	}
	in, err := fsys.Lookup("huge")
	if err != nil {
		t.Fatal(err)
	}
	if !in.Extended || in.Size != size {
		t.Errorf("huge file: extended=%v size=%d, want an extended inode of %d bytes", in.Extended, in.Size, int64(size))
	}
	if b, err := fsys.ReadFile("small"); err != nil || string(b) != "x" {
		t.Errorf("small file next to the huge one: %q, %v", b, err)
	}
}
