package erofs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/enclave-storage/enclave-storage/fstree"
)

// memImage is an in-memory io.WriterAt / io.ReaderAt.
type memImage struct{ b []byte }

func (m *memImage) WriteAt(p []byte, off int64) (int, error) {
	if end := off + int64(len(p)); end > int64(len(m.b)) {
		m.b = append(m.b, make([]byte, end-int64(len(m.b)))...)
	}
	return copy(m.b[off:], p), nil
}

func (m *memImage) ReadAt(p []byte, off int64) (int, error) {
	if off >= int64(len(m.b)) {
		return 0, io.EOF
	}
	n := copy(p, m.b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// patterned is deterministic, incompressible-looking content of any size
// without holding it in memory.
type patterned struct {
	seed byte
	n    int64
}

func (p patterned) Size() int64 { return p.n }
func (p patterned) Open() (io.ReadCloser, error) {
	return io.NopCloser(io.LimitReader(&patternReader{seed: p.seed}, p.n)), nil
}

type patternReader struct {
	seed byte
	off  int64
}

func (r *patternReader) Read(b []byte) (int, error) {
	for i := range b {
		o := r.off + int64(i)
		b[i] = byte(o*7+o>>12) ^ r.seed
	}
	r.off += int64(len(b))
	return len(b), nil
}

func contentSHA(t testing.TB, c fstree.Content) [32]byte {
	t.Helper()
	if c == nil {
		return sha256.Sum256(nil)
	}
	r, err := c.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	h := sha256.New()
	if _, err := io.Copy(h, r); err != nil {
		t.Fatal(err)
	}
	var s [32]byte
	h.Sum(s[:0])
	return s
}

var t0 = time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC)

// sampleTree has every entry type, ownership above 65535, special mode bits,
// xattrs, hard links, empty and multi-block files, a directory spanning
// several blocks and a deep path.
func sampleTree(t testing.TB, big bool) *fstree.Tree {
	t.Helper()
	tr := fstree.New()
	root := tr.Root()
	root.ModTime = t0
	root.Xattrs = map[string][]byte{"security.selinux": []byte("system_u:object_r:root_t:s0\x00")}
	mk := func(p string, n *fstree.Inode) {
		t.Helper()
		if n.ModTime.IsZero() {
			n.ModTime = t0
		}
		if err := tr.Insert(p, n); err != nil {
			t.Fatal(err)
		}
	}
	dir := func(perm uint32) *fstree.Inode { return fstree.NewDir(perm, 0, 0, t0) }
	file := func(perm uint32, c fstree.Content) *fstree.Inode {
		return &fstree.Inode{Type: fstree.TypeRegular, Perm: perm, Content: c}
	}
	mk("bin", dir(0o755))
	mk("bin/sh", file(0o755, fstree.Bytes("#!/bin/true\n")))
	mk("bin/su", &fstree.Inode{Type: fstree.TypeRegular, Perm: 0o4755, UID: 0, GID: 0, Content: fstree.Bytes("setuid"), ModTime: t0.Add(-time.Hour)})
	mk("bin/sgid", &fstree.Inode{Type: fstree.TypeRegular, Perm: 0o2711, GID: 42, Content: fstree.Bytes("g")})
	mk("tmp", dir(0o1777))
	mk("empty", file(0o600, nil))
	mk("empty2", file(0o644, fstree.Bytes{}))
	mk("big", file(0o644, patterned{1, 3*BlockSize + 123}))
	mk("large", file(0o644, patterned{5, 3<<20 + 77}))
	mk("aligned", file(0o644, patterned{2, 2 * BlockSize}))
	mk("almost", file(0o644, patterned{3, BlockSize - 1}))
	mk("tailtoolong", file(0o644, patterned{4, BlockSize + BlockSize - 40}))
	mk("owned", &fstree.Inode{Type: fstree.TypeRegular, Perm: 0o640, UID: 100000, GID: 70000, Content: fstree.Bytes("ns")})
	mk("old", &fstree.Inode{Type: fstree.TypeRegular, Perm: 0o644, Content: fstree.Bytes("1970"), ModTime: time.Unix(1, 5)})
	mk("link", &fstree.Inode{Type: fstree.TypeSymlink, Perm: 0o777, Target: "bin/sh"})
	mk("abslink", &fstree.Inode{Type: fstree.TypeSymlink, Perm: 0o777, Target: "/" + strings.Repeat("x/", 500) + "end"})
	mk("dev", dir(0o755))
	mk("dev/null", &fstree.Inode{Type: fstree.TypeCharDevice, Perm: 0o666, Major: 1, Minor: 3})
	mk("dev/sda1", &fstree.Inode{Type: fstree.TypeBlockDevice, Perm: 0o660, GID: 6, Major: 8, Minor: 1})
	mk("dev/bigminor", &fstree.Inode{Type: fstree.TypeCharDevice, Perm: 0o600, Major: 4095, Minor: 0xfffff})
	mk("dev/fifo", &fstree.Inode{Type: fstree.TypeFIFO, Perm: 0o620})
	mk("dev/sock", &fstree.Inode{Type: fstree.TypeSocket, Perm: 0o755})
	x := file(0o644, fstree.Bytes("with xattrs"))
	x.Xattrs = map[string][]byte{
		"user.mime":           []byte("text/plain"),
		"user.empty":          {},
		"trusted.overlay.opq": []byte("y"),
		"security.capability": {1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
	}
	mk("xattrs", x)
	bigx := file(0o644, fstree.Bytes("big xattrs"))
	bigx.UID = 1 << 17 // extended inode
	bigx.Xattrs = map[string][]byte{
		"user.a":    bytes.Repeat([]byte("a"), 3000),
		"user.b":    bytes.Repeat([]byte("b"), 3000),
		"trusted.c": bytes.Repeat([]byte("c"), 200),
	}
	mk("bigxattrs", bigx)
	// A POSIX access ACL (user 1000 may read) in the kernel's xattr format:
	// version 2, then {tag, perm, id} entries.
	acl := file(0o644, fstree.Bytes("acl"))
	acl.Xattrs = map[string][]byte{"system.posix_acl_access": {
		2, 0, 0, 0,
		0x01, 0, 6, 0, 0xff, 0xff, 0xff, 0xff, // USER_OBJ rw-
		0x02, 0, 4, 0, 0xe8, 0x03, 0, 0, // USER 1000 r--
		0x04, 0, 4, 0, 0xff, 0xff, 0xff, 0xff, // GROUP_OBJ r--
		0x10, 0, 4, 0, 0xff, 0xff, 0xff, 0xff, // MASK r--
		0x20, 0, 4, 0, 0xff, 0xff, 0xff, 0xff, // OTHER r--
	}}
	mk("acl", acl)
	hl := file(0o644, fstree.Bytes("hard linked"))
	mk("hl1", hl)
	mk("bin/hl2", hl)
	mk("dev/hl3", hl)
	deep := ""
	for i := 0; i < 40; i++ {
		deep += fmt.Sprintf("d%02d/", i)
		mk(deep, dir(0o755))
	}
	mk(deep+"leaf", file(0o644, fstree.Bytes("deep")))
	mk("many", dir(0o755))
	n := 600
	if big {
		n = 3000
	}
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("many/%s-%05d", strings.Repeat("n", i%50), i)
		mk(name, file(0o644, fstree.Bytes(name)))
	}
	mk("many/.hidden", file(0o644, fstree.Bytes("h")))
	mk("many/-dash", file(0o644, fstree.Bytes("d")))
	mk("many/zürich", file(0o644, fstree.Bytes("utf-8")))
	mk("many/\xffhigh", file(0o644, fstree.Bytes("high byte")))
	mk("many/sp ace", file(0o644, fstree.Bytes("space")))
	mk("many/"+strings.Repeat("L", 255), file(0o644, fstree.Bytes("long name")))
	return tr
}

func writeImage(t testing.TB, tr *fstree.Tree, opts Options) []byte {
	t.Helper()
	var m memImage
	st, err := Write(context.Background(), &m, tr, opts)
	if err != nil {
		t.Fatal(err)
	}
	if st.Size != int64(len(m.b)) || st.Size%BlockSize != 0 {
		t.Fatalf("Stats.Size %d, wrote %d bytes", st.Size, len(m.b))
	}
	return m.b
}

func writeFile(t testing.TB, tr *fstree.Tree, opts Options) string {
	t.Helper()
	name := filepath.Join(t.TempDir(), "img.erofs")
	f, err := os.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := Write(context.Background(), f, tr, opts); err != nil {
		t.Fatal(err)
	}
	return name
}

// compareReader checks that our reader sees exactly the tree.
func compareReader(t *testing.T, img []byte, tr *fstree.Tree, bt time.Time) {
	t.Helper()
	fsys, err := Open(bytes.NewReader(img), int64(len(img)))
	if err != nil {
		t.Fatal(err)
	}
	links := tr.Links()
	nids := map[*fstree.Inode]uint64{}
	count := 0
	err = tr.Walk(func(p string, want *fstree.Inode) error {
		count++
		got, err := fsys.Lookup(p)
		if err != nil {
			return err
		}
		if got.Type != want.Type || got.Mode != want.Mode() || got.UID != want.UID || got.GID != want.GID {
			t.Errorf("/%s: type %v mode %o uid %d gid %d; want %v %o %d %d", p, got.Type, got.Mode, got.UID, got.GID, want.Type, want.Mode(), want.UID, want.GID)
		}
		wantTime := want.ModTime
		if wantTime.IsZero() {
			wantTime = time.Unix(0, 0)
		}
		if !got.ModTime.Equal(wantTime) {
			t.Errorf("/%s: mtime %v, want %v", p, got.ModTime, wantTime)
		}
		if got.Nlink != links[want] {
			t.Errorf("/%s: nlink %d, want %d", p, got.Nlink, links[want])
		}
		if prev, ok := nids[want]; ok && prev != got.Nid {
			t.Errorf("/%s: hard link has nid %d, other link %d", p, got.Nid, prev)
		}
		nids[want] = got.Nid
		switch want.Type {
		case fstree.TypeRegular:
			b, err := fsys.ReadFile(p)
			if err != nil {
				return err
			}
			if sha256.Sum256(b) != contentSHA(t, want.Content) || int64(len(b)) != want.Size() {
				t.Errorf("/%s: content differs (%d bytes, want %d)", p, len(b), want.Size())
			}
		case fstree.TypeSymlink:
			s, err := fsys.Readlink(p)
			if err != nil || s != want.Target {
				t.Errorf("/%s: readlink %q, %v", p, s, err)
			}
		case fstree.TypeCharDevice, fstree.TypeBlockDevice:
			if got.Major != want.Major || got.Minor != want.Minor {
				t.Errorf("/%s: device %d:%d, want %d:%d", p, got.Major, got.Minor, want.Major, want.Minor)
			}
		case fstree.TypeDir:
			ents, err := fsys.Entries(got)
			if err != nil {
				return err
			}
			if len(ents) != want.Len()+2 {
				t.Errorf("/%s: %d entries, want %d", p, len(ents), want.Len()+2)
			}
			for i := 1; i < len(ents); i++ {
				if ents[i-1].Name >= ents[i].Name {
					t.Errorf("/%s: entries not sorted: %q, %q", p, ents[i-1].Name, ents[i].Name)
				}
			}
		}
		x, err := fsys.Xattrs(got)
		if err != nil {
			return err
		}
		if len(x) != len(want.Xattrs) {
			t.Errorf("/%s: %d xattrs, want %d", p, len(x), len(want.Xattrs))
		}
		for k, v := range want.Xattrs {
			if !bytes.Equal(x[k], v) {
				t.Errorf("/%s: xattr %s = %q, want %q", p, k, x[k], v)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	if err := fsys.Walk(func(string, *Inode) error { seen++; return nil }); err != nil {
		t.Fatal(err)
	}
	if seen != count {
		t.Errorf("reader walked %d entries, tree has %d", seen, count)
	}
	if sb := fsys.Superblock(); !sb.BuildTime.Equal(bt) {
		t.Errorf("build time %v, want %v", sb.BuildTime, bt)
	}
}

func TestWriteReadBack(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts Options
	}{
		{"inline", Options{BuildTime: t0}},
		{"noinline", Options{BuildTime: t0, NoInline: true}},
		{"other build time", Options{BuildTime: time.Unix(1700000000, 0), VolumeName: "rootfs"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := sampleTree(t, false)
			img := writeImage(t, tr, tc.opts)
			compareReader(t, img, tr, tc.opts.BuildTime)
			fsys, err := Open(bytes.NewReader(img), int64(len(img)))
			if err != nil {
				t.Fatal(err)
			}
			got, err := fsys.Tree()
			if err != nil {
				t.Fatal(err)
			}
			d, err := fstree.Diff(tr, got, fstree.DiffOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if len(d) > 0 {
				t.Fatalf("FS.Tree differs from the input:\n%s", strings.Join(d, "\n"))
			}
		})
	}
}

func TestReproducible(t *testing.T) {
	a := writeImage(t, sampleTree(t, false), Options{})
	b := writeImage(t, sampleTree(t, false), Options{})
	if !bytes.Equal(a, b) {
		t.Fatal("two writes of the same tree differ")
	}
	tr := sampleTree(t, false)
	n, _ := tr.Lookup("many/-dash")
	n.Content = fstree.Bytes("D")
	c := writeImage(t, tr, Options{})
	if bytes.Equal(a, c) {
		t.Fatal("changing one byte of a file did not change the image")
	}
	fa, _ := Open(bytes.NewReader(a), int64(len(a)))
	fc, _ := Open(bytes.NewReader(c), int64(len(c)))
	if fa.Superblock().UUID == fc.Superblock().UUID {
		t.Error("derived UUID did not change with the content")
	}
	// Big content change in a data block, not inline.
	tr = sampleTree(t, false)
	n, _ = tr.Lookup("big")
	n.Content = patterned{9, 3*BlockSize + 123}
	d := writeImage(t, tr, Options{})
	if bytes.Equal(a, d) {
		t.Fatal("changing a multi-block file did not change the image")
	}
	if fd, _ := Open(bytes.NewReader(d), int64(len(d))); fd.Superblock().UUID == fa.Superblock().UUID {
		t.Error("derived UUID did not change with the data blocks")
	}
	uuid := [16]byte{1, 2, 3}
	e := writeImage(t, sampleTree(t, false), Options{UUID: uuid})
	fe, _ := Open(bytes.NewReader(e), int64(len(e)))
	if fe.Superblock().UUID != uuid {
		t.Errorf("UUID %x, want %x", fe.Superblock().UUID, uuid)
	}
}

func TestBuildTimeDefault(t *testing.T) {
	tr := sampleTree(t, false)
	t.Setenv("SOURCE_DATE_EPOCH", "")
	img := writeImage(t, tr, Options{})
	f, _ := Open(bytes.NewReader(img), int64(len(img)))
	if got := f.Superblock().BuildTime; !got.Equal(t0) {
		t.Errorf("default build time %v, want newest mtime %v", got, t0)
	}
	t.Setenv("SOURCE_DATE_EPOCH", "1234567890")
	img = writeImage(t, tr, Options{})
	f, _ = Open(bytes.NewReader(img), int64(len(img)))
	if got := f.Superblock().BuildTime; got.Unix() != 1234567890 {
		t.Errorf("SOURCE_DATE_EPOCH build time %v", got)
	}
	compareReader(t, img, tr, time.Unix(1234567890, 0))
	t.Setenv("SOURCE_DATE_EPOCH", "soon")
	if _, err := Write(context.Background(), &memImage{}, tr, Options{}); err == nil {
		t.Error("bad SOURCE_DATE_EPOCH accepted")
	}
}

// shortContent claims more bytes than it has.
type shortContent struct{ claim, have int64 }

func (s shortContent) Size() int64 { return s.claim }
func (s shortContent) Open() (io.ReadCloser, error) {
	return io.NopCloser(io.LimitReader(&patternReader{}, s.have)), nil
}

type failingContent struct{}

func (failingContent) Size() int64                  { return 10 }
func (failingContent) Open() (io.ReadCloser, error) { return nil, errors.New("spool gone") }

func TestWriteErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		n    *fstree.Inode
		want error
	}{
		{"bad xattr", &fstree.Inode{Type: fstree.TypeRegular, Xattrs: map[string][]byte{"system.foo": nil}}, ErrUnsupportedXattr},
		{"bare prefix", &fstree.Inode{Type: fstree.TypeRegular, Xattrs: map[string][]byte{"user.": nil}}, ErrUnsupportedXattr},
		{"huge xattr", &fstree.Inode{Type: fstree.TypeRegular, Xattrs: map[string][]byte{"user.a": make([]byte, 70000)}}, ErrTooLarge},
		{"short inline", &fstree.Inode{Type: fstree.TypeRegular, Content: shortContent{100, 50}}, ErrContentSize},
		{"long inline", &fstree.Inode{Type: fstree.TypeRegular, Content: shortContent{100, 150}}, ErrContentSize},
		{"short blocks", &fstree.Inode{Type: fstree.TypeRegular, Content: shortContent{3 * BlockSize, BlockSize}}, ErrContentSize},
		{"long blocks", &fstree.Inode{Type: fstree.TypeRegular, Content: shortContent{2 * BlockSize, 2*BlockSize + 1}}, ErrContentSize},
		{"short tail", &fstree.Inode{Type: fstree.TypeRegular, Content: shortContent{BlockSize + 10, BlockSize + 5}}, ErrContentSize},
		{"empty symlink", &fstree.Inode{Type: fstree.TypeSymlink}, ErrTooLarge},
		{"big device", &fstree.Inode{Type: fstree.TypeCharDevice, Major: 4096}, ErrTooLarge},
		{"open fails", &fstree.Inode{Type: fstree.TypeRegular, Content: failingContent{}}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := fstree.New()
			if err := tr.Insert("d", fstree.NewDir(0o755, 0, 0, t0)); err != nil {
				t.Fatal(err)
			}
			if err := tr.Insert("d/x", tc.n); err != nil {
				t.Fatal(err)
			}
			_, err := Write(context.Background(), &memImage{}, tr, Options{BuildTime: t0})
			var we *WriteError
			if !errors.As(err, &we) || we.Path != "d/x" {
				t.Fatalf("err = %v, want a WriteError for d/x", err)
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
	t.Run("dir cycle", func(t *testing.T) {
		tr := fstree.New()
		d := fstree.NewDir(0o755, 0, 0, t0)
		tr.Insert("a", d)
		tr.Insert("a/b", fstree.NewDir(0o755, 0, 0, t0))
		tr.Insert("c", d) // the same directory twice
		for _, o := range []Options{{BuildTime: t0}, {}} {
			if _, err := Write(context.Background(), &memImage{}, tr, o); !errors.Is(err, ErrDirCycle) {
				t.Fatalf("err = %v, want ErrDirCycle", err)
			}
		}
		tr.Insert("a/b/up", d) // and a real cycle
		if _, err := Write(context.Background(), &memImage{}, tr, Options{BuildTime: t0}); !errors.Is(err, ErrDirCycle) {
			t.Fatalf("cycle: err = %v, want ErrDirCycle", err)
		}
	})
	t.Run("canceled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := Write(ctx, &memImage{}, sampleTree(t, false), Options{}); !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("volume name", func(t *testing.T) {
		if _, err := Write(context.Background(), &memImage{}, fstree.New(), Options{VolumeName: strings.Repeat("v", 17)}); !errors.Is(err, ErrTooLarge) {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestEmptyTree(t *testing.T) {
	tr := fstree.New()
	img := writeImage(t, tr, Options{})
	compareReader(t, img, tr, time.Unix(0, 0))
}

type failingWriter struct{ after int64 }

func (f failingWriter) WriteAt(p []byte, off int64) (int, error) {
	if off+int64(len(p)) > f.after {
		return 0, errors.New("disk full")
	}
	return len(p), nil
}

func TestWriterFails(t *testing.T) {
	for _, after := range []int64{0, BlockSize, 2 << 20} {
		_, err := Write(context.Background(), failingWriter{after}, sampleTree(t, false), Options{})
		if err == nil || !strings.Contains(err.Error(), "disk full") {
			t.Errorf("failing after %d bytes: err = %v", after, err)
		}
	}
}
