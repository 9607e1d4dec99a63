package erofs

import (
	"bytes"
	"io/fs"
	"testing"
	"testing/fstest"
	"time"

	"github.com/enclave-storage/enclave-storage/fstree"
)

// TestIOFS runs the standard library's file-system conformance checks
// over an image and compares fs.ReadFile and fs.Stat with the tree.
func TestIOFS(t *testing.T) {
	tr := sampleTree(t, false)
	img := writeImage(t, tr, Options{BuildTime: t0})
	fsys, err := Open(bytes.NewReader(img), int64(len(img)))
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	tr.Walk(func(p string, n *fstree.Inode) error {
		if p != "" && len(want) < 50 {
			want = append(want, p)
		}
		return nil
	})
	if err := fstest.TestFS(fsys, want...); err != nil {
		t.Fatal(err)
	}
	b, err := fs.ReadFile(fsys, "bin/sh")
	if err != nil || string(b) != "#!/bin/true\n" {
		t.Fatalf("fs.ReadFile = %q, %v", b, err)
	}
	fi, err := fs.Stat(fsys, "bin/su")
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode() != fs.ModeSetuid|0o755 || !fi.ModTime().Equal(t0.Add(-time.Hour)) || fi.Sys().(*Inode).Type != fstree.TypeRegular {
		t.Errorf("stat bin/su: %v %v", fi.Mode(), fi.ModTime())
	}
	n := 0
	if err := fs.WalkDir(fsys, ".", func(string, fs.DirEntry, error) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	total := 0
	tr.Walk(func(string, *fstree.Inode) error { total++; return nil })
	if n != total {
		t.Errorf("fs.WalkDir saw %d entries, tree has %d", n, total)
	}
	if _, err := fsys.Open("../x"); err == nil {
		t.Error("invalid path opened")
	}
}

func TestValidPath(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{".", true}, {"a", true}, {"a/b", true}, {"\xff/x", true},
		{"", false}, {"/a", false}, {"a/", false}, {"a//b", false}, {"a/./b", false}, {"../a", false}, {"a/..", false},
	} {
		if got := validPath(tc.name); got != tc.ok {
			t.Errorf("validPath(%q) = %v, want %v", tc.name, got, tc.ok)
		}
	}
}
