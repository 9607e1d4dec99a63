package erofs

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/enclave-storage/enclave-storage/fstree"
)

var update = flag.Bool("update", false, "rewrite testdata/golden.erofs")

// goldenTree is a small tree of every kind of entry. Its image is
// committed: any change to the bytes Write produces shows up here, so
// format changes are deliberate (run go test -run TestGolden -update).
func goldenTree() *fstree.Tree {
	mt := time.Unix(1700000000, 5)
	tr := fstree.New()
	tr.Root().ModTime = mt
	tr.Insert("etc", fstree.NewDir(0o755, 0, 0, mt))
	tr.Insert("etc/passwd", &fstree.Inode{Type: fstree.TypeRegular, Perm: 0o644, ModTime: mt, Content: fstree.Bytes("root:x:0:0::/root:/bin/sh\n")})
	tr.Insert("etc/shadow", &fstree.Inode{Type: fstree.TypeRegular, Perm: 0o600, ModTime: mt.Add(time.Second), Content: fstree.Bytes("root:*::0:::::\n")})
	tr.Insert("bin", fstree.NewDir(0o755, 0, 0, mt))
	ping := &fstree.Inode{Type: fstree.TypeRegular, Perm: 0o4755, ModTime: mt, Content: fstree.Bytes(bytes.Repeat([]byte{0x7f, 'E', 'L', 'F'}, 1500)),
		Xattrs: map[string][]byte{"security.capability": {1, 0, 0, 2, 0, 0x20}}}
	tr.Insert("bin/ping", ping)
	tr.Insert("bin/ping6", ping)
	tr.Insert("sh", &fstree.Inode{Type: fstree.TypeSymlink, Perm: 0o777, ModTime: mt, Target: "bin/ping"})
	tr.Insert("dev", fstree.NewDir(0o755, 0, 0, mt))
	tr.Insert("dev/null", &fstree.Inode{Type: fstree.TypeCharDevice, Perm: 0o666, ModTime: mt, Major: 1, Minor: 3})
	tr.Insert("dev/initctl", &fstree.Inode{Type: fstree.TypeFIFO, Perm: 0o600, ModTime: mt})
	tr.Insert("home", fstree.NewDir(0o700, 100000, 100000, mt))
	return tr
}

func TestGolden(t *testing.T) {
	name := filepath.Join("testdata", "golden.erofs")
	img := writeImage(t, goldenTree(), Options{BuildTime: time.Unix(1700000001, 5), VolumeName: "golden"})
	if *update {
		if err := os.WriteFile(name, img, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(name)
	if err != nil {
		t.Fatalf("%v (run go test -run TestGolden -update to create it)", err)
	}
	if !bytes.Equal(img, want) {
		t.Fatalf("image of the golden tree (%d bytes) differs from %s (%d bytes): the on-disk output changed; if on purpose, run go test -run TestGolden -update", len(img), name, len(want))
	}
	fsys, err := Open(bytes.NewReader(want), int64(len(want)))
	if err != nil {
		t.Fatal(err)
	}
	got, err := fsys.Tree()
	if err != nil {
		t.Fatal(err)
	}
	d, err := fstree.Diff(goldenTree(), got, fstree.DiffOptions{})
	if err != nil || len(d) > 0 {
		t.Fatalf("golden image reads back differently: %v %q", err, d)
	}
}
