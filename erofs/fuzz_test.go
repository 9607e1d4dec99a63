package erofs

import (
	"bytes"
	"io"
	"testing"
	"time"

	"github.com/enclave-storage/enclave-storage/fstree"
)

// exercise runs every reader operation over an image and must never
// panic, hang or allocate beyond the image's size.
func exercise(img []byte) {
	fsys, err := Open(bytes.NewReader(img), int64(len(img)))
	if err != nil {
		return
	}
	steps := 0
	fsys.Walk(func(p string, in *Inode) error {
		steps++
		if steps > 10000 {
			return io.EOF
		}
		fsys.Xattrs(in)
		switch in.Type {
		case fstree.TypeRegular:
			if r, err := fsys.Data(in); err == nil {
				io.Copy(io.Discard, io.LimitReader(r, 1<<20))
			}
		case fstree.TypeSymlink:
			fsys.Readlink(p)
		}
		return nil
	})
	fsys.Lookup("a/b/c")
	fsys.ReadFile("f")
}

// fuzzImage turns fuzz input into an image: its first 128 bytes are the
// superblock (checksum recomputed, so mutations get past it), the rest is
// the image from block 1 on. Keeping inputs this small (no padding) keeps
// the fuzzer fast; Go's fuzzer crawls on inputs of many kilobytes.
func fuzzImage(data []byte) []byte {
	if len(data) < superSize {
		return data
	}
	img := make([]byte, BlockSize+len(data)-superSize)
	copy(img[superOffset:], data[:superSize])
	copy(img[BlockSize:], data[superSize:])
	s := img[superOffset:BlockSize]
	le.PutUint32(s[4:], 0)
	le.PutUint32(s[4:], sbChecksum(s))
	return img
}

// fuzzInput is the inverse of fuzzImage for a valid image.
func fuzzInput(img []byte) []byte {
	return append(append([]byte(nil), img[superOffset:superOffset+superSize]...), bytes.TrimRight(img[BlockSize:], "\x00")...)
}

// FuzzOpen feeds arbitrary superblocks and metadata to the reader.
func FuzzOpen(f *testing.F) {
	tr := fstree.New()
	tr.Insert("d", fstree.NewDir(0o755, 0, 0, time.Unix(5, 0)))
	tr.Insert("d/f", &fstree.Inode{Type: fstree.TypeRegular, Perm: 0o644, Content: fstree.Bytes("hello"),
		Xattrs: map[string][]byte{"user.x": []byte("y"), "security.selinux": []byte("z")}})
	tr.Insert("l", &fstree.Inode{Type: fstree.TypeSymlink, Perm: 0o777, Target: "d/f"})
	tr.Insert("c", &fstree.Inode{Type: fstree.TypeCharDevice, Major: 1, Minor: 3, UID: 1 << 20})
	f.Add(fuzzInput(writeImage(f, tr, Options{BuildTime: time.Unix(5, 0)})))
	tr.Insert("big", &fstree.Inode{Type: fstree.TypeRegular, Content: fstree.Bytes(bytes.Repeat([]byte{1}, BlockSize+5))})
	f.Add(fuzzInput(writeImage(f, tr, Options{})))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 1<<20 {
			return
		}
		exercise(fuzzImage(data))
	})
}

// FuzzRead mutates a valid image at chosen offsets, past the superblock
// checksum (which is recomputed), so the fuzzer reaches inodes,
// directories and xattrs rather than stopping at the checksum.
func FuzzRead(f *testing.F) {
	tr := fstree.New()
	tr.Insert("d", fstree.NewDir(0o755, 0, 0, time.Unix(5, 0)))
	tr.Insert("d/f", &fstree.Inode{Type: fstree.TypeRegular, Content: fstree.Bytes("hello"), Xattrs: map[string][]byte{"user.x": []byte("y")}})
	tr.Insert("d/e", fstree.NewDir(0o700, 0, 0, time.Unix(5, 0)))
	tr.Insert("l", &fstree.Inode{Type: fstree.TypeSymlink, Target: "d/f"})
	base := writeImage(f, tr, Options{BuildTime: time.Unix(5, 0)})
	f.Add(uint16(BlockSize+32), []byte{0xff, 0xff})
	f.Add(uint16(BlockSize+64+8), []byte{1, 0, 0, 0, 0, 0, 0, 0})
	f.Add(uint16(superOffset+14), []byte{2})
	f.Fuzz(func(t *testing.T, off uint16, patch []byte) {
		img := append([]byte(nil), base...)
		if int(off) >= len(img) {
			return
		}
		copy(img[off:], patch)
		s := img[superOffset : superOffset+BlockSize-superOffset]
		le.PutUint32(s[4:], 0)
		le.PutUint32(s[4:], sbChecksum(s))
		exercise(img)
	})
}

// TestCyclicDirectory makes a directory entry point at an ancestor: the
// reader must report corruption, not loop.
func TestCyclicDirectory(t *testing.T) {
	tr := fstree.New()
	tr.Insert("a", fstree.NewDir(0o755, 0, 0, t0))
	tr.Insert("a/zz", fstree.NewDir(0o755, 0, 0, t0))
	img := writeImage(t, tr, Options{BuildTime: t0})
	fsys, err := Open(bytes.NewReader(img), int64(len(img)))
	if err != nil {
		t.Fatal(err)
	}
	a, _ := fsys.Lookup("a")
	zz, _ := fsys.Lookup("a/zz")
	// Point a's "zz" entry back at a itself.
	idx := bytes.Index(img, []byte("..zz"))
	if idx < 0 {
		t.Fatal("directory block of /a not found")
	}
	blockStart := idx - 3*direntSize - 1 // ".", "..", "zz" dirents precede the names
	for i := 0; i < 3; i++ {
		d := img[blockStart+i*direntSize:]
		if le.Uint64(d) == zz.Nid {
			le.PutUint64(d, a.Nid)
		}
	}
	fsys, err = Open(bytes.NewReader(img), int64(len(img)))
	if err != nil {
		t.Fatal(err)
	}
	if err := fsys.Walk(func(string, *Inode) error { return nil }); err == nil {
		t.Fatal("walk of a cyclic directory tree succeeded")
	}
	if _, err := fsys.Lookup("a/zz/zz/zz/zz"); err != nil {
		t.Fatalf("bounded lookup through the cycle: %v", err)
	}
}

func TestOpenErrors(t *testing.T) {
	img := writeImage(t, fstree.New(), Options{})
	for _, tc := range []struct {
		name string
		mod  func([]byte) []byte
	}{
		{"short", func(b []byte) []byte { return b[:100] }},
		{"magic", func(b []byte) []byte { b[superOffset] ^= 1; return b }},
		{"checksum", func(b []byte) []byte { b[superOffset+100] ^= 1; return b }},
		{"block bits", func(b []byte) []byte {
			b[superOffset+12] = 30
			s := b[superOffset:BlockSize]
			le.PutUint32(s[4:], 0)
			le.PutUint32(s[4:], sbChecksum(s))
			return b
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.mod(append([]byte(nil), img...))
			if _, err := Open(bytes.NewReader(b), int64(len(b))); err == nil {
				t.Fatal("corrupt image opened")
			}
		})
	}
}
