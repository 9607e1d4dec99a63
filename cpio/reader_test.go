package cpio

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
)

type readEntry struct {
	name, link, data string
	mode             fs.FileMode
}

func readAll(t testing.TB, b []byte) ([]readEntry, error) {
	r := NewReader(bytes.NewReader(b))
	var out []readEntry
	for {
		h, err := r.Next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		data, err := io.ReadAll(io.LimitReader(r, 1<<20))
		if err != nil {
			return out, err
		}
		out = append(out, readEntry{h.Name, h.Linkname, string(data), h.Mode})
	}
}

func TestReaderRoundTrip(t *testing.T) {
	var a Archive
	must(t, a.AddFile("usr/bin/tool", 0o755, []byte("hello")))
	must(t, a.AddFile("odd", 0o600, []byte("abc")))
	must(t, a.AddSymlink("init", "usr/bin/tool"))
	must(t, a.AddDevice("dev/console", 0o600, true, 5, 1))
	must(t, a.AddDir("tmp", 0o777|fs.ModeSticky))
	var one bytes.Buffer
	if _, err := a.WriteTo(&one); err != nil {
		t.Fatal(err)
	}
	want := []readEntry{
		{"dev", "", "", fs.ModeDir | 0o755},
		{"dev/console", "", "", fs.ModeDevice | fs.ModeCharDevice | 0o600},
		{"init", "usr/bin/tool", "", fs.ModeSymlink | 0o777},
		{"odd", "", "abc", 0o600},
		{"tmp", "", "", fs.ModeDir | fs.ModeSticky | 0o777},
		{"usr", "", "", fs.ModeDir | 0o755},
		{"usr/bin", "", "", fs.ModeDir | 0o755},
		{"usr/bin/tool", "", "hello", 0o755},
	}
	// Concatenated after NUL padding, as Nitro and the kernel take them.
	two := slices.Concat(one.Bytes(), make([]byte, 8), one.Bytes())
	tests := []struct {
		name string
		in   []byte
		want []readEntry
	}{
		{"one archive", one.Bytes(), want},
		{"two concatenated", two, slices.Concat(want, want)},
		{"empty input", nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := readAll(t, tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("got %v\nwant %v", got, tt.want)
			}
		})
	}
}

func TestReaderRejects(t *testing.T) {
	var a Archive
	must(t, a.AddFile("f", 0o644, []byte("data")))
	var b bytes.Buffer
	if _, err := a.WriteTo(&b); err != nil {
		t.Fatal(err)
	}
	good := b.Bytes()
	tests := []struct {
		name string
		in   []byte
	}{
		{"gzip", []byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0}},
		{"truncated header", good[:50]},
		{"truncated data", good[:HeaderSize+2+2]},
		{"bad hex", append([]byte("070701zzzzzzzz"), good[14:]...)},
		{"misaligned", append([]byte{0, '0'}, good...)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := readAll(t, tt.in); !errors.Is(err, ErrFormat) {
				t.Errorf("err %v, want ErrFormat", err)
			}
		})
	}
}

// TestReaderGNUCpio reads an archive GNU cpio wrote from a real directory.
func TestReaderGNUCpio(t *testing.T) {
	cpioBin, err := exec.LookPath("cpio")
	if err != nil {
		t.Skip("cpio not installed (apt-get install cpio)")
	}
	dir := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(dir, "lib/modules"), 0o755))
	must(t, os.WriteFile(filepath.Join(dir, "lib/modules/a.ko"), []byte("\x7fELF12345"), 0o644))
	must(t, os.Symlink("lib/modules/a.ko", filepath.Join(dir, "link")))
	cmd := exec.Command(cpioBin, "-o", "-H", "newc", "--quiet")
	cmd.Dir = dir
	cmd.Stdin = bytes.NewReader([]byte("lib\nlib/modules\nlib/modules/a.ko\nlink\n"))
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("cpio -o: %v", err)
	}
	got, err := readAll(t, out)
	if err != nil {
		t.Fatal(err)
	}
	want := []readEntry{
		{"lib", "", "", fs.ModeDir | 0o755},
		{"lib/modules", "", "", fs.ModeDir | 0o755},
		{"lib/modules/a.ko", "", "\x7fELF12345", 0o644},
		{"link", "lib/modules/a.ko", "", fs.ModeSymlink | 0o777},
	}
	if !slices.Equal(got, want) {
		t.Errorf("got %v\nwant %v", got, want)
	}
}

func FuzzReader(f *testing.F) {
	var a Archive
	_ = a.AddFile("etc/x", 0o644, []byte("abc"))
	_ = a.AddSymlink("init", "etc/x")
	var b bytes.Buffer
	_, _ = a.WriteTo(&b)
	f.Add(b.Bytes())
	f.Add(append(b.Bytes(), b.Bytes()...))
	f.Add([]byte("070701"))
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := readAll(t, data)
		if err != nil {
			return
		}
		// What reads back cleanly writes again and reads back the same.
		var ar Archive
		for _, e := range got {
			switch {
			case e.mode.IsDir():
				_ = ar.AddDir(e.name, e.mode)
			case e.mode&fs.ModeSymlink != 0:
				_ = ar.AddSymlink(e.name, e.link)
			case e.mode.IsRegular():
				_ = ar.AddFile(e.name, e.mode, []byte(e.data))
			}
		}
		var out bytes.Buffer
		if _, err := ar.WriteTo(&out); err != nil {
			return
		}
		if _, err := readAll(t, out.Bytes()); err != nil {
			t.Fatalf("our own archive does not read back: %v", err)
		}
	})
}
