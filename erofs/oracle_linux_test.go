//go:build linux

package erofs

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/enclave-storage/enclave-storage/fstree"
)

func needTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s not installed (erofs-utils): %v", name, err)
	}
	return p
}

// rootlessTree is sampleTree without device nodes when not root, since
// extracting them needs mknod privileges.
func oracleTree(t *testing.T) *fstree.Tree {
	tr := sampleTree(t, false)
	if os.Getuid() != 0 {
		for _, p := range []string{"dev/null", "dev/sda1", "dev/bigminor"} {
			if err := tr.Remove(p); err != nil {
				t.Fatal(err)
			}
		}
	}
	return tr
}

// TestFsckExtract has fsck.erofs check the image and extract it, then
// compares the extracted tree with the input. fsck.erofs 1.5 restores
// neither xattrs nor hard links; the mount test covers those.
func TestFsckExtract(t *testing.T) {
	fsck := needTool(t, "fsck.erofs")
	for _, opts := range []Options{{BuildTime: t0}, {BuildTime: t0, NoInline: true}} {
		t.Run(fmt.Sprintf("noinline=%v", opts.NoInline), func(t *testing.T) {
			tr := oracleTree(t)
			img := writeFile(t, tr, opts)
			if out, err := exec.Command(fsck, img).CombinedOutput(); err != nil {
				t.Fatalf("fsck.erofs rejects the image: %v\n%s", err, out)
			}
			dir := filepath.Join(t.TempDir(), "x")
			args := []string{"--extract=" + dir}
			if os.Getuid() == 0 {
				args = append(args, "--preserve")
			}
			if out, err := exec.Command(fsck, append(args, img)...).CombinedOutput(); err != nil {
				t.Fatalf("fsck.erofs --extract: %v\n%s", err, out)
			}
			got, err := fstree.FromDir(context.Background(), dir)
			if err != nil {
				t.Fatal(err)
			}
			diffOpts := fstree.DiffOptions{IgnoreXattrs: true, IgnoreHardLinks: true, IgnoreOwner: os.Getuid() != 0}
			if os.Getuid() != 0 {
				diffOpts.IgnoreModTime = true
			}
			// The extraction directory's own metadata is fsck's, not the image root's.
			got.Root().Perm, got.Root().ModTime, got.Root().UID, got.Root().GID = tr.Root().Perm, tr.Root().ModTime, tr.Root().UID, tr.Root().GID
			d, err := fstree.Diff(tr, got, diffOpts)
			if err != nil {
				t.Fatal(err)
			}
			// fsck.erofs 1.5 restores no symlink mtimes, and chowns after
			// chmod, which clears setuid and setgid.
			var real []string
			for _, l := range d {
				var a, b uint32
				if _, err := fmt.Sscanf(l[strings.Index(l, ": ")+2:], "perm %o != %o", &a, &b); err == nil && a&^0o6000 == b {
					continue
				}
				if strings.Contains(l, "mtime") {
					if n, err := tr.Lookup(strings.SplitN(l[1:], ":", 2)[0]); err == nil && n.Type == fstree.TypeSymlink {
						continue
					}
				}
				real = append(real, l)
			}
			if len(real) > 0 {
				t.Fatalf("extracted tree differs:\n%s", strings.Join(real, "\n"))
			}
		})
	}
}

var dumpLine = regexp.MustCompile(`(?s)Size: (\d+) .*NID: (\d+)\s+Links: (\d+)\s+Layout: (\d+).*Uid: (\d+)\s+Gid: (\d+)\s+Access: (\d+)/.*Timestamp: (\S+ \S+)`)

// TestDumpErofs compares dump.erofs's view of inodes with ours
// (dump.erofs prints only the rwx bits of the mode).
func TestDumpErofs(t *testing.T) {
	dump := needTool(t, "dump.erofs")
	tr := sampleTree(t, false)
	img := writeFile(t, tr, Options{BuildTime: t0})
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	fsys, err := Open(f, st.Size())
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(dump, "-s", "-S", img).CombinedOutput()
	if err != nil {
		t.Fatalf("dump.erofs -s -S: %v\n%s", err, out)
	}
	counts := map[fstree.Type]int{}
	total := 0
	tr.Walk(func(p string, n *fstree.Inode) error { counts[n.Type]++; total++; return nil })
	for _, want := range []string{
		fmt.Sprintf("Filesystem total file count:\t\t%d", total),
		fmt.Sprintf("Filesystem regular file count:\t\t%d", counts[fstree.TypeRegular]),
		fmt.Sprintf("Filesystem directory count:\t\t%d", counts[fstree.TypeDir]),
		fmt.Sprintf("Filesystem symlink file count:\t\t%d", counts[fstree.TypeSymlink]),
		fmt.Sprintf("Filesystem char dev count:\t\t%d", counts[fstree.TypeCharDevice]),
		fmt.Sprintf("Filesystem root nid:                          %d", fsys.Superblock().RootNid),
		"sb_csum",
	} {
		if !bytes.Contains(out, []byte(want)) {
			t.Errorf("dump.erofs output lacks %q:\n%s", want, out)
		}
	}
	links := tr.Links()
	checked := 0
	err = tr.Walk(func(p string, n *fstree.Inode) error {
		if strings.HasPrefix(p, "many/") && !strings.HasSuffix(p, "0") {
			return nil // a sample of the big directory keeps the test quick
		}
		out, err := exec.Command(dump, "--path=/"+p, img).CombinedOutput()
		if err != nil {
			return fmt.Errorf("dump.erofs --path=/%s: %v\n%s", p, err, out)
		}
		m := dumpLine.FindSubmatch(out)
		if m == nil {
			return fmt.Errorf("dump.erofs --path=/%s: unexpected output\n%s", p, out)
		}
		in, err := fsys.Lookup(p)
		if err != nil {
			return err
		}
		num := func(i int) uint64 { v, _ := strconv.ParseUint(string(m[i]), 10, 64); return v }
		perm, _ := strconv.ParseUint(string(m[7]), 8, 32)
		ts, err := time.ParseInLocation("2006-01-02 15:04:05.999999999", string(m[8]), time.Local)
		if err != nil {
			return fmt.Errorf("dump.erofs timestamp %q: %w", m[8], err)
		}
		if n.Type != fstree.TypeDir && int64(num(1)) != n.Size() || num(2) != in.Nid || uint32(num(3)) != links[n] ||
			num(5) != uint64(n.UID) || num(6) != uint64(n.GID) || uint32(perm) != n.Perm&0o777 || !ts.Equal(n.ModTime) {
			t.Errorf("/%s: dump.erofs says\n%s\nwant size %d nid %d links %d uid %d gid %d perm %o mtime %v", p, out, n.Size(), in.Nid, links[n], n.UID, n.GID, n.Perm, n.ModTime)
		}
		checked++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("dump.erofs agreed on %d inodes", checked)
}

// TestMountCompare loop-mounts the image read-only and compares the whole
// tree as the kernel presents it (lstat, readlink, Lgetxattr, content,
// st_ino sharing for hard links) with the input.
func TestMountCompare(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("loop-mounting needs root")
	}
	for _, opts := range []Options{{BuildTime: t0}, {NoInline: true}} {
		t.Run(fmt.Sprintf("noinline=%v", opts.NoInline), func(t *testing.T) { mountCompare(t, opts) })
	}
}

func mountCompare(t *testing.T, opts Options) {
	tr := sampleTree(t, false)
	img := writeFile(t, tr, opts)
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "erofs", "-o", "ro,loop", img, mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot loop-mount erofs here (no loop devices or no erofs in this kernel?): %v: %s", err, bytes.TrimSpace(out))
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", mnt, err, out)
		}
	})
	got, err := fstree.FromDir(context.Background(), mnt)
	if err != nil {
		t.Fatal(err)
	}
	d, err := fstree.Diff(tr, got, fstree.DiffOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(d) > 0 {
		t.Fatalf("mounted tree differs from the input:\n%s", strings.Join(d, "\n"))
	}
	// Directory sizes and "." / ".." as the kernel lists them.
	ents, err := os.ReadDir(filepath.Join(mnt, "many"))
	if err != nil {
		t.Fatal(err)
	}
	many, _ := tr.Lookup("many")
	if len(ents) != many.Len() {
		t.Errorf("kernel lists %d entries in /many, want %d", len(ents), many.Len())
	}
}

// TestReadMkfsErofs has mkfs.erofs (uncompressed) build an image of a
// directory and checks that our reader sees the directory, so the reader
// is checked against another writer, not only against ours.
func TestReadMkfsErofs(t *testing.T) {
	mkfs := needTool(t, "mkfs.erofs")
	src := filepath.Join(t.TempDir(), "src")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(src, "a/b/c"), 0o755))
	must(os.WriteFile(filepath.Join(src, "a/small"), []byte("small"), 0o644))
	big := bytes.Repeat([]byte("0123456789abcdef"), 1000)
	must(os.WriteFile(filepath.Join(src, "a/b/big"), big, 0o600))
	must(os.Link(filepath.Join(src, "a/b/big"), filepath.Join(src, "hard")))
	must(os.Symlink("a/b/big", filepath.Join(src, "sym")))
	for i := 0; i < 300; i++ {
		must(os.WriteFile(filepath.Join(src, "a/b/c", fmt.Sprintf("file-with-a-long-name-%04d", i)), []byte{byte(i)}, 0o644))
	}
	// Same xattr on many files: mkfs.erofs may share it.
	for _, p := range []string{"a/small", "a/b/big", "a/b/c/file-with-a-long-name-0001"} {
		if err := setUserXattr(filepath.Join(src, p), "user.shared", "value"); err != nil {
			t.Logf("no user xattrs on this filesystem: %v", err)
			break
		}
	}
	img := filepath.Join(t.TempDir(), "mkfs.img")
	if out, err := exec.Command(mkfs, "-x1", img, src).CombinedOutput(); err != nil {
		if out2, err2 := exec.Command(mkfs, img, src).CombinedOutput(); err2 != nil {
			t.Fatalf("mkfs.erofs: %v\n%s\n%s", err, out, out2)
		}
	}
	f, err := os.Open(img)
	must(err)
	defer f.Close()
	st, _ := f.Stat()
	fsys, err := Open(f, st.Size())
	must(err)
	got, err := fsys.Tree()
	must(err)
	want, err := fstree.FromDir(context.Background(), src)
	must(err)
	d, err := fstree.Diff(want, got, fstree.DiffOptions{
		// Host security.* labels are not part of what is compared.
		IgnoreXattr: func(name string) bool { return strings.HasPrefix(name, "security.") },
	})
	must(err)
	if len(d) > 0 {
		t.Fatalf("our reader's view of a mkfs.erofs image differs from the source directory:\n%s", strings.Join(d, "\n"))
	}
}
