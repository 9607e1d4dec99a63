package fstree

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

func file(data string) *Inode {
	return &Inode{Type: TypeRegular, Perm: 0o644, Content: Bytes(data)}
}

func dir() *Inode { return NewDir(0o755, 0, 0, time.Unix(1, 0)) }

func paths(t *testing.T, tr *Tree) []string {
	t.Helper()
	var out []string
	if err := tr.Walk(func(p string, n *Inode) error {
		out = append(out, p)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestClean(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", ""}, {"/", ""}, {".", ""}, {"a", "a"}, {"/a/b/", "a/b"},
		{"a/./b/../c", "a/c"}, {"../../etc", "etc"}, {"a//b", "a/b"},
	} {
		if got := Clean(tc.in); got != tc.want {
			t.Errorf("Clean(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestInsertLookupRemove(t *testing.T) {
	tr := New()
	f := file("x")
	steps := []struct {
		name    string
		op      func() error
		wantErr error
	}{
		{"mkdir a", func() error { return tr.Insert("a", dir()) }, nil},
		{"file a/f", func() error { return tr.Insert("/a/f", f) }, nil},
		{"missing parent", func() error { return tr.Insert("b/c", file("")) }, ErrNotExist},
		{"parent is file", func() error { return tr.Insert("a/f/g", file("")) }, ErrNotDir},
		{"invalid type", func() error { return tr.Insert("a/z", &Inode{}) }, ErrInvalid},
		{"nil inode", func() error { return tr.Insert("a/z", nil) }, ErrInvalid},
		{"hard link", func() error { return tr.Insert("a/link", f) }, nil},
		{"remove missing", func() error { return tr.Remove("nope") }, ErrNotExist},
		{"remove under file", func() error { return tr.Remove("a/f/x") }, ErrNotDir},
	}
	for _, s := range steps {
		err := s.op()
		if s.wantErr == nil && err != nil || s.wantErr != nil && !errors.Is(err, s.wantErr) {
			t.Fatalf("%s: err = %v, want %v", s.name, err, s.wantErr)
		}
	}
	if got, err := tr.Lookup("a/link"); err != nil || got != f {
		t.Fatalf("Lookup(a/link) = %v, %v; want the same inode as a/f", got, err)
	}
	if l := tr.Links()[f]; l != 2 {
		t.Errorf("links of hard-linked file = %d, want 2", l)
	}
	if err := tr.Remove("a/f"); err != nil {
		t.Fatal(err)
	}
	if got, err := tr.Lookup("a/link"); err != nil || got != f {
		t.Fatalf("hard link lost after removing the other name: %v, %v", got, err)
	}
	if err := tr.Remove("a"); err != nil {
		t.Fatal(err)
	}
	if _, err := tr.Lookup("a/link"); !errors.Is(err, ErrNotExist) {
		t.Fatalf("Lookup after recursive remove: %v", err)
	}
	if got := paths(t, tr); !reflect.DeepEqual(got, []string{""}) {
		t.Errorf("tree after removal = %q", got)
	}
}

func TestInsertReplace(t *testing.T) {
	tr := New()
	d := dir()
	if err := tr.Insert("d", d); err != nil {
		t.Fatal(err)
	}
	if err := tr.Insert("d/f", file("1")); err != nil {
		t.Fatal(err)
	}
	// A later directory header keeps the entries but changes metadata.
	d2 := NewDir(0o700, 5, 5, time.Unix(2, 0))
	if err := tr.Insert("d", d2); err != nil {
		t.Fatal(err)
	}
	if n, _ := tr.Lookup("d"); n != d2 || n.Child("f") == nil {
		t.Fatalf("directory over directory: got %+v", n)
	}
	// A file replaces a directory and its entries.
	if err := tr.Insert("d", file("2")); err != nil {
		t.Fatal(err)
	}
	if _, err := tr.Lookup("d/f"); !errors.Is(err, ErrNotDir) {
		t.Fatalf("Lookup(d/f) after file replaced dir: %v", err)
	}
	// A directory replaces a file.
	if err := tr.Insert("d", dir()); err != nil {
		t.Fatal(err)
	}
	if n, _ := tr.Lookup("d"); n.Type != TypeDir || n.Len() != 0 {
		t.Fatalf("dir over file: %+v", n)
	}
	// Root metadata.
	r := NewDir(0o711, 1, 2, time.Unix(3, 0))
	if err := tr.Insert("/", r); err != nil {
		t.Fatal(err)
	}
	if tr.Root() != r || r.Child("d") == nil {
		t.Fatal("root replacement lost entries")
	}
	if err := tr.Insert("/", file("")); !errors.Is(err, ErrNotDir) {
		t.Fatalf("file as root: %v", err)
	}
}

func TestMkdirAllAndRemoveChildren(t *testing.T) {
	tr := New()
	tmpl := Inode{Perm: 0o750, UID: 7, GID: 8, ModTime: time.Unix(9, 0), Xattrs: map[string][]byte{"user.a": []byte("b")}}
	d, err := tr.MkdirAll("x/y/z", tmpl)
	if err != nil {
		t.Fatal(err)
	}
	if d.Type != TypeDir || d.Perm != 0o750 || d.UID != 7 || string(d.Xattrs["user.a"]) != "b" {
		t.Fatalf("MkdirAll made %+v", d)
	}
	if err := tr.Insert("x/y/f", file("")); err != nil {
		t.Fatal(err)
	}
	if _, err := tr.MkdirAll("x/y/f/g", tmpl); !errors.Is(err, ErrNotDir) {
		t.Fatalf("MkdirAll through file: %v", err)
	}
	if err := tr.RemoveChildren("x/y"); err != nil {
		t.Fatal(err)
	}
	if got := paths(t, tr); !reflect.DeepEqual(got, []string{"", "x", "x/y"}) {
		t.Fatalf("after RemoveChildren: %q", got)
	}
}

func TestWalkOrderAndLinks(t *testing.T) {
	tr := New()
	for _, p := range []string{"b", "a", "a/z", "a/B", "c"} {
		n := dir()
		if p == "c" || p == "a/z" {
			n = file(p)
		}
		if err := tr.Insert(p, n); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{"", "a", "a/B", "a/z", "b", "c"}
	if got := paths(t, tr); !reflect.DeepEqual(got, want) {
		t.Fatalf("walk order %q, want %q", got, want)
	}
	var got []string
	tr.Walk(func(p string, n *Inode) error {
		got = append(got, p)
		if p == "a" {
			return SkipDir
		}
		return nil
	})
	if want := []string{"", "a", "b", "c"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("SkipDir walk %q, want %q", got, want)
	}
	stop := errors.New("stop")
	if err := tr.Walk(func(string, *Inode) error { return stop }); err != stop {
		t.Fatalf("Walk error = %v", err)
	}
	links := tr.Links()
	root, _ := tr.Lookup("")
	a, _ := tr.Lookup("a")
	if links[root] != 4 || links[a] != 3 {
		t.Errorf("dir links root=%d a=%d, want 4 and 3", links[root], links[a])
	}
}

func TestModes(t *testing.T) {
	for _, tc := range []struct {
		typ  Type
		perm uint32
		unix uint32
	}{
		{TypeRegular, 0o4755, 0o104755},
		{TypeDir, 0o1777, 0o041777},
		{TypeSymlink, 0o777, 0o120777},
		{TypeCharDevice, 0o666, 0o020666},
		{TypeBlockDevice, 0o660, 0o060660},
		{TypeFIFO, 0o2644, 0o012644},
		{TypeSocket, 0o755, 0o140755},
	} {
		n := &Inode{Type: tc.typ, Perm: tc.perm}
		if got := n.Mode(); got != tc.unix {
			t.Errorf("%v %o: Mode = %o, want %o", tc.typ, tc.perm, got, tc.unix)
		}
		if got := TypeFromUnix(tc.unix); got != tc.typ {
			t.Errorf("TypeFromUnix(%o) = %v", tc.unix, got)
		}
		fm := n.FileMode()
		if fm.Perm() != os.FileMode(tc.perm&0o777) {
			t.Errorf("%v: FileMode perm %v", tc.typ, fm)
		}
		if tc.typ == TypeDir && !fm.IsDir() || tc.typ == TypeRegular && !fm.IsRegular() {
			t.Errorf("%v: FileMode %v", tc.typ, fm)
		}
	}
}

func TestContent(t *testing.T) {
	name := filepath.Join(t.TempDir(), "spool")
	if err := os.WriteFile(name, []byte("0123456789"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, tc := range []struct {
		name    string
		c       Content
		want    string
		wantErr bool
	}{
		{"bytes", Bytes("abc"), "abc", false},
		{"file range", FileRange{name, 2, 5}, "23456", false},
		{"section", SectionContent{f, 7, 3}, "789", false},
		{"short file", FileRange{name, 8, 5}, "89", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for i := 0; i < 2; i++ { // Open is repeatable
				r, err := tc.c.Open()
				if err != nil {
					t.Fatal(err)
				}
				b, err := io.ReadAll(r)
				r.Close()
				if (err != nil) != tc.wantErr || string(b) != tc.want {
					t.Fatalf("read %q, %v; want %q (error %v)", b, err, tc.want, tc.wantErr)
				}
			}
		})
	}
	if _, err := (FileRange{Name: filepath.Join(t.TempDir(), "gone"), Length: 1}).Open(); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing spool: %v", err)
	}
}

func TestDirectoryLinkedTwice(t *testing.T) {
	tr := New()
	a := dir()
	if err := tr.Insert("a", a); err != nil {
		t.Fatal(err)
	}
	if err := tr.Insert("a/b", dir()); err != nil {
		t.Fatal(err)
	}
	if err := tr.Insert("a/b/loop", a); err != nil { // a cycle
		t.Fatal(err)
	}
	if err := tr.Walk(func(string, *Inode) error { return nil }); !errors.Is(err, ErrDirLinked) {
		t.Fatalf("Walk of a cyclic tree: %v", err)
	}
	links := tr.Links() // must terminate
	if links[a] == 0 {
		t.Error("no link count for a")
	}
}
