//go:build linux

package fstree

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestFromDirAndDiff(t *testing.T) {
	dir := t.TempDir()
	mt := time.Date(2023, 1, 2, 3, 4, 5, 600, time.UTC)
	want := New()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.Mkdir(filepath.Join(dir, "sub"), 0o750))
	must(os.WriteFile(filepath.Join(dir, "sub", "f"), []byte("hello"), 0o640))
	must(os.Link(filepath.Join(dir, "sub", "f"), filepath.Join(dir, "hl")))
	must(os.WriteFile(filepath.Join(dir, "empty"), nil, 0o600))
	must(os.Symlink("sub/f", filepath.Join(dir, "ln")))
	must(unix.Mkfifo(filepath.Join(dir, "fifo"), 0o644))
	for _, p := range []string{"sub/f", "empty", "fifo", "sub", ""} {
		must(os.Chtimes(filepath.Join(dir, p), mt, mt))
		must(os.Chmod(filepath.Join(dir, p), map[string]os.FileMode{"sub/f": 0o640, "empty": 0o600, "fifo": 0o644, "sub": 0o750, "": 0o755}[p]))
	}
	ts := unix.NsecToTimespec(mt.UnixNano())
	must(unix.UtimesNanoAt(unix.AT_FDCWD, filepath.Join(dir, "ln"), []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW))
	xattrs := unix.Lsetxattr(filepath.Join(dir, "empty"), "user.k", []byte("v"), 0) == nil

	uid, gid := uint32(os.Getuid()), uint32(os.Getgid())
	root := want.Root()
	root.Perm, root.UID, root.GID, root.ModTime = 0o755, uid, gid, mt
	f := &Inode{Type: TypeRegular, Perm: 0o640, UID: uid, GID: gid, ModTime: mt, Content: Bytes("hello")}
	must(want.Insert("sub", NewDir(0o750, uid, gid, mt)))
	must(want.Insert("sub/f", f))
	must(want.Insert("hl", f))
	e := &Inode{Type: TypeRegular, Perm: 0o600, UID: uid, GID: gid, ModTime: mt}
	if xattrs {
		e.Xattrs = map[string][]byte{"user.k": []byte("v")}
	}
	must(want.Insert("empty", e))
	must(want.Insert("ln", &Inode{Type: TypeSymlink, Perm: 0o777, UID: uid, GID: gid, ModTime: mt, Target: "sub/f"}))
	must(want.Insert("fifo", &Inode{Type: TypeFIFO, Perm: 0o644, UID: uid, GID: gid, ModTime: mt}))

	got, err := FromDir(context.Background(), dir)
	must(err)
	ignoreHost := func(name string) bool { return strings.HasPrefix(name, "security.") }
	d, err := Diff(want, got, DiffOptions{IgnoreXattr: ignoreHost})
	must(err)
	if len(d) > 0 {
		t.Fatalf("FromDir differs from the expected tree:\n%s", strings.Join(d, "\n"))
	}
	hl, _ := got.Lookup("hl")
	sf, _ := got.Lookup("sub/f")
	if hl != sf {
		t.Error("hard link not shared")
	}

	// Diff reports each kind of difference.
	other, err := FromDir(context.Background(), dir)
	must(err)
	n, _ := other.Lookup("sub/f")
	n.Content = Bytes("HELLO")
	n.UID++
	must(other.Remove("hl"))
	must(other.Insert("hl", &Inode{Type: TypeRegular, Perm: 0o640, UID: uid, GID: gid, ModTime: mt, Content: Bytes("hello")}))
	must(other.Insert("new", &Inode{Type: TypeFIFO}))
	must(other.Remove("ln"))
	d, err = Diff(got, other, DiffOptions{IgnoreXattr: ignoreHost})
	must(err)
	joined := strings.Join(d, "\n")
	for _, w := range []string{"/sub/f: owner", "/sub/f: content differs", "/sub/f: hard-linked with /hl", "/ln: only in first", "/new: only in second"} {
		if !strings.Contains(joined, w) {
			t.Errorf("diff lacks %q:\n%s", w, joined)
		}
	}
	if _, err := FromDir(context.Background(), filepath.Join(dir, "empty")); err == nil {
		t.Error("FromDir on a file succeeded")
	}
}
