package cpio

import (
	"bytes"
	"errors"
	"io/fs"
	"strconv"
	"strings"
	"testing"
)

// parsed is one entry decoded by the test's own newc parser.
type parsed struct {
	name                                                string
	ino, mode, uid, gid, nlink, mtime, rdevmaj, rdevmin uint64
	data                                                string
}

// parseNewc is a straightforward newc decoder used to check Writer's
// output, including the kernel's 4-byte alignment rules.
func parseNewc(t *testing.T, b []byte) []parsed {
	t.Helper()
	var out []parsed
	off := 0
	for {
		if off%4 != 0 {
			t.Fatalf("header at %d is not 4-byte aligned", off)
		}
		if len(b)-off < HeaderSize {
			t.Fatalf("truncated header at %d", off)
		}
		h := b[off : off+HeaderSize]
		if string(h[:6]) != Magic {
			t.Fatalf("bad magic %q at %d", h[:6], off)
		}
		f := make([]uint64, 13)
		for i := range f {
			v, err := strconv.ParseUint(string(h[6+8*i:14+8*i]), 16, 32)
			if err != nil {
				t.Fatalf("field %d at %d: %v", i, off, err)
			}
			f[i] = v
		}
		namesize, size := int(f[11]), int(f[6])
		nameStart := off + HeaderSize
		name := b[nameStart : nameStart+namesize]
		if name[namesize-1] != 0 {
			t.Fatalf("name at %d not NUL terminated", nameStart)
		}
		dataStart := (nameStart + namesize + 3) &^ 3
		for _, c := range b[nameStart+namesize : dataStart] {
			if c != 0 {
				t.Fatalf("non-zero name padding at %d", nameStart)
			}
		}
		p := parsed{name: string(name[:namesize-1]), ino: f[0], mode: f[1], uid: f[2], gid: f[3], nlink: f[4], mtime: f[5], rdevmaj: f[9], rdevmin: f[10],
			data: string(b[dataStart : dataStart+size])}
		if f[12] != 0 || f[7] != 0 || f[8] != 0 {
			t.Fatalf("%s: check/devmajor/devminor not zero: %v", p.name, f)
		}
		off = (dataStart + size + 3) &^ 3
		if p.name == Trailer {
			if off != len(b) {
				t.Fatalf("%d bytes after trailer", len(b)-off)
			}
			return out
		}
		out = append(out, p)
	}
}

func TestWriterHeaderBytes(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	if err := w.WriteHeader(&Header{Name: "a", Mode: 0o644, Inode: 7, ModTime: 0x5f5e100, Size: 3}); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("xyz")); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	// Header of "a", hand-encoded: 110 bytes + "a\0" = 112 (aligned), data
	// "xyz" + 1 pad, then the trailer (110 + 11 = 121 -> 124).
	want := "070701" + "00000007" + "000081a4" + "00000000" + "00000000" + "00000001" + "05f5e100" +
		"00000003" + "00000000" + "00000000" + "00000000" + "00000000" + "00000002" + "00000000" + "a\x00" + "xyz\x00" +
		"070701" + strings.Repeat("0", 8) + strings.Repeat("0", 8*3) + "00000001" + strings.Repeat("0", 8*6) + "0000000b" + "00000000" + "TRAILER!!!\x00" + "\x00\x00\x00"
	if got := buf.String(); got != want {
		t.Fatalf("bytes differ:\n got %q\nwant %q", got, want)
	}
}

func TestWriterErrors(t *testing.T) {
	tests := []struct {
		name string
		do   func(w *Writer) error
		want error
	}{
		{"too long", func(w *Writer) error {
			if err := w.WriteHeader(&Header{Name: "f", Mode: 0o644, Size: 1}); err != nil {
				return err
			}
			_, err := w.Write([]byte("ab"))
			return err
		}, ErrWriteTooLong},
		{"short", func(w *Writer) error {
			if err := w.WriteHeader(&Header{Name: "f", Mode: 0o644, Size: 2}); err != nil {
				return err
			}
			return w.Close()
		}, ErrShortWrite},
		{"empty name", func(w *Writer) error { return w.WriteHeader(&Header{Mode: 0o644}) }, ErrInvalidHeader},
		{"nul in name", func(w *Writer) error { return w.WriteHeader(&Header{Name: "a\x00b"}) }, ErrInvalidHeader},
		{"dir with size", func(w *Writer) error { return w.WriteHeader(&Header{Name: "d", Mode: fs.ModeDir, Size: 1}) }, ErrInvalidHeader},
		{"symlink no target", func(w *Writer) error { return w.WriteHeader(&Header{Name: "l", Mode: fs.ModeSymlink}) }, ErrInvalidHeader},
		{"huge", func(w *Writer) error { return w.WriteHeader(&Header{Name: "f", Size: 1 << 32}) }, ErrInvalidHeader},
		{"after close", func(w *Writer) error {
			if err := w.Close(); err != nil {
				return err
			}
			return w.WriteHeader(&Header{Name: "f"})
		}, ErrClosed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.do(NewWriter(new(bytes.Buffer)))
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
}

func TestArchiveLayout(t *testing.T) {
	var a Archive
	a.ModTime = 1700000000
	must(t, a.AddFile("usr/bin/tool", 0o755, []byte("#!/bin/sh\n")))
	must(t, a.AddFile("/etc/conf.json", 0o600, []byte("{}")))
	must(t, a.AddSymlink("init", "usr/bin/tool"))
	must(t, a.AddDevice("dev/console", 0o600, true, 5, 1))
	must(t, a.AddDevice("dev/vda", 0o660, false, 253, 0))
	must(t, a.AddDir("tmp", 0o1777|fs.ModeSticky))
	must(t, a.AddFile("empty", 0o644, nil))
	var buf bytes.Buffer
	if _, err := a.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	got := parseNewc(t, buf.Bytes())
	want := []parsed{
		{name: "dev", mode: 0o40755, nlink: 2},
		{name: "dev/console", mode: 0o20600, nlink: 1, rdevmaj: 5, rdevmin: 1},
		{name: "dev/vda", mode: 0o60660, nlink: 1, rdevmaj: 253},
		{name: "empty", mode: 0o100644, nlink: 1},
		{name: "etc", mode: 0o40755, nlink: 2},
		{name: "etc/conf.json", mode: 0o100600, nlink: 1, data: "{}"},
		{name: "init", mode: 0o120777, nlink: 1, data: "usr/bin/tool"},
		{name: "tmp", mode: 0o41777, nlink: 2},
		{name: "usr", mode: 0o40755, nlink: 2},
		{name: "usr/bin", mode: 0o40755, nlink: 2},
		{name: "usr/bin/tool", mode: 0o100755, nlink: 1, data: "#!/bin/sh\n"},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d entries, want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		want[i].ino = uint64(i + 1)
		want[i].mtime = 1700000000
		if got[i] != want[i] {
			t.Errorf("entry %d:\n got %+v\nwant %+v", i, got[i], want[i])
		}
	}
	// Same contents added in another order give the same bytes.
	var b Archive
	b.ModTime = 1700000000
	must(t, b.AddFile("empty", 0o644, nil))
	must(t, b.AddDir("tmp", 0o1777|fs.ModeSticky))
	must(t, b.AddDevice("dev/vda", 0o660, false, 253, 0))
	must(t, b.AddDevice("dev/console", 0o600, true, 5, 1))
	must(t, b.AddSymlink("init", "usr/bin/tool"))
	must(t, b.AddFile("etc/conf.json", 0o600, []byte("{}")))
	must(t, b.AddFile("./usr/bin/tool", 0o755, []byte("#!/bin/sh\n")))
	var buf2 bytes.Buffer
	if _, err := b.WriteTo(&buf2); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), buf2.Bytes()) {
		t.Fatal("archive bytes depend on insertion order")
	}
}

func TestArchiveErrors(t *testing.T) {
	var a Archive
	must(t, a.AddFile("x", 0o644, nil))
	if err := a.AddFile("x", 0o644, nil); !errors.Is(err, ErrInvalidHeader) {
		t.Errorf("duplicate: got %v", err)
	}
	if err := a.AddFile("/", 0o644, nil); !errors.Is(err, ErrInvalidHeader) {
		t.Errorf("root: got %v", err)
	}
	must(t, a.AddFile("x/y", 0o644, nil))
	if _, err := a.WriteTo(new(bytes.Buffer)); !errors.Is(err, ErrInvalidHeader) {
		t.Errorf("file as parent: got %v", err)
	}
	// "../x" is cleaned to "x" under the root, never above it.
	var b Archive
	must(t, b.AddFile("../../etc/x", 0o644, nil))
	if n := b.Names(); len(n) != 2 || n[1] != "etc/x" {
		t.Errorf("names %q", n)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func BenchmarkArchive16MiB(b *testing.B) {
	data := bytes.Repeat([]byte{0xa5}, 16<<20)
	var a Archive
	if err := a.AddFile("usr/bin/nbd-enclave", 0o755, data); err != nil {
		b.Fatal(err)
	}
	var out bytes.Buffer
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		out.Reset()
		if _, err := a.WriteTo(&out); err != nil {
			b.Fatal(err)
		}
	}
}

func TestEmptyArchive(t *testing.T) {
	// An empty archive is the trailer alone: 110 + 11 bytes, padded to 124.
	var buf bytes.Buffer
	n, err := new(Archive).WriteTo(&buf)
	if err != nil || n != 124 || buf.Len() != 124 {
		t.Fatalf("n=%d len=%d err=%v", n, buf.Len(), err)
	}
	if got := parseNewc(t, buf.Bytes()); len(got) != 0 {
		t.Fatalf("entries %+v", got)
	}
}
