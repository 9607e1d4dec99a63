package layer_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/enclave-storage/enclave-storage/fstree"
	"github.com/enclave-storage/enclave-storage/layer"
)

// E is one tar entry. These tests build their own tar streams rather than
// use imgsrc/ocitest, which would link containers/image into the fuzzer.
type E struct {
	tar.Header
	Body []byte
}

var t0 = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)

func file(name, body string) E {
	return E{tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, ModTime: t0, Size: int64(len(body))}, []byte(body)}
}
func dir(name string) E {
	return E{Header: tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: 0o755, ModTime: t0}}
}
func symlink(name, target string) E {
	return E{Header: tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777, ModTime: t0}}
}
func link(name, target string) E {
	return E{Header: tar.Header{Typeflag: tar.TypeLink, Name: name, Linkname: target, Mode: 0o644, ModTime: t0}}
}
func wh(d, name string) E { return file(path.Join(d, ".wh."+name), "") }

func mkTar(entries ...E) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		if err := tw.WriteHeader(&e.Header); err != nil {
			return nil, err
		}
		if _, err := tw.Write(e.Body); err != nil {
			return nil, err
		}
	}
	err := tw.Close()
	return buf.Bytes(), err
}

func with(e E, f func(h *tar.Header)) E { f(&e.Header); return e }

// dump renders a tree one line per entry: path, type and permissions,
// owner, then content, symlink target, device number, xattrs and link
// count where they apply.
func dump(t *testing.T, tr *fstree.Tree) []string {
	t.Helper()
	links := tr.Links()
	var out []string
	err := tr.Walk(func(p string, n *fstree.Inode) error {
		if p == "" {
			p = "."
		}
		s := fmt.Sprintf("%s %s %04o %d:%d", p, n.Type, n.Perm, n.UID, n.GID)
		switch n.Type {
		case fstree.TypeRegular:
			var body []byte
			if n.Content != nil {
				rc, err := n.Content.Open()
				if err != nil {
					return err
				}
				body, err = io.ReadAll(rc)
				rc.Close()
				if err != nil {
					return err
				}
			}
			s += fmt.Sprintf(" %q", body)
			if links[n] > 1 {
				s += fmt.Sprintf(" links=%d", links[n])
			}
		case fstree.TypeSymlink:
			s += " -> " + n.Target
		case fstree.TypeCharDevice, fstree.TypeBlockDevice:
			s += fmt.Sprintf(" %d:%d", n.Major, n.Minor)
		}
		if len(n.Xattrs) > 0 {
			var ks []string
			for k, v := range n.Xattrs {
				ks = append(ks, fmt.Sprintf("%s=%q", k, v))
			}
			sort.Strings(ks)
			s += " xattr[" + strings.Join(ks, ",") + "]"
		}
		out = append(out, s)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func flatten(t *testing.T, layers ...[]E) (*layer.Flattener, error) {
	t.Helper()
	return flattenWith(t, layer.Options{}, layers...)
}

func flattenWith(t *testing.T, opts layer.Options, layers ...[]E) (*layer.Flattener, error) {
	t.Helper()
	opts.SpoolDir = t.TempDir()
	fl, err := layer.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fl.Close() })
	for i, l := range layers {
		b, err := mkTar(l...)
		if err != nil {
			t.Fatal(err)
		}
		if err := fl.Apply(context.Background(), bytes.NewReader(b), fmt.Sprintf("sha256:layer%d", i)); err != nil {
			return fl, err
		}
	}
	return fl, nil
}

func TestFlatten(t *testing.T) {
	for _, tc := range []struct {
		name   string
		policy layer.Policy
		layers [][]E
		want   []string
	}{
		{
			name:   "implicit parents",
			layers: [][]E{{file("a/b/c", "x")}},
			want: []string{
				". dir 0755 0:0",
				"a dir 0755 0:0",
				"a/b dir 0755 0:0",
				`a/b/c file 0644 0:0 "x"`,
			},
		},
		{
			name: "whiteout deletes lower file and dir",
			layers: [][]E{
				{dir("etc"), file("etc/keep", "k"), file("etc/gone", "g"), dir("var"), file("var/log", "l")},
				{wh("etc", "gone"), wh("", "var"), wh("", "never-existed")},
			},
			want: []string{
				". dir 0755 0:0",
				"etc dir 0755 0:0",
				`etc/keep file 0644 0:0 "k"`,
			},
		},
		{
			name: "opaque dir hides lower content only",
			layers: [][]E{
				{dir("d"), file("d/old", "o"), dir("d/sub"), file("d/sub/deep", "d")},
				// The new file comes before the marker: a whiteout never
				// hides its own layer's entries.
				{dir("d"), file("d/new", "n"), wh("d", ".wh..opq"), file("d/sub/fresh", "f")},
			},
			want: []string{
				". dir 0755 0:0",
				"d dir 0755 0:0",
				`d/new file 0644 0:0 "n"`,
				"d/sub dir 0755 0:0",
				`d/sub/fresh file 0644 0:0 "f"`,
			},
		},
		{
			name: "whiteout in same layer does not hide that layer's file",
			layers: [][]E{
				{file("a", "lower")},
				{file("a", "upper"), wh("", "a")},
			},
			want: []string{". dir 0755 0:0", `a file 0644 0:0 "upper"`},
		},
		{
			name: "hard links within and across layers",
			layers: [][]E{
				{file("bin/busybox", "bb"), link("bin/sh", "bin/busybox")},
				{link("usr/bin/ls", "/bin/busybox")},
			},
			want: []string{
				". dir 0755 0:0",
				"bin dir 0755 0:0",
				`bin/busybox file 0644 0:0 "bb" links=3`,
				`bin/sh file 0644 0:0 "bb" links=3`,
				"usr dir 0755 0:0",
				"usr/bin dir 0755 0:0",
				`usr/bin/ls file 0644 0:0 "bb" links=3`,
			},
		},
		{
			name: "hard link survives deletion of its target",
			layers: [][]E{
				{file("a", "data"), link("b", "a")},
				{wh("", "a")},
			},
			want: []string{". dir 0755 0:0", `b file 0644 0:0 "data"`},
		},
		{
			name: "replacing a hard-linked path breaks the link",
			layers: [][]E{
				{file("a", "v1"), link("b", "a")},
				{file("a", "v2")},
			},
			want: []string{". dir 0755 0:0", `a file 0644 0:0 "v2"`, `b file 0644 0:0 "v1"`},
		},
		{
			name:   "symlinks, devices, fifo",
			policy: layer.Policy{KeepDevices: true},
			layers: [][]E{{
				symlink("lib", "usr/lib"),
				with(E{}, func(h *tar.Header) {
					*h = tar.Header{Typeflag: tar.TypeChar, Name: "dev/null", Mode: 0o666, Devmajor: 1, Devminor: 3}
				}),
				with(E{}, func(h *tar.Header) {
					*h = tar.Header{Typeflag: tar.TypeBlock, Name: "dev/vda", Mode: 0o660, Gid: 6, Devmajor: 254, Devminor: 0}
				}),
				with(E{}, func(h *tar.Header) { *h = tar.Header{Typeflag: tar.TypeFifo, Name: "run/fifo", Mode: 0o600} }),
			}},
			want: []string{
				". dir 0755 0:0",
				"dev dir 0755 0:0",
				"dev/null chardev 0666 0:0 1:3",
				"dev/vda blockdev 0660 0:6 254:0",
				"lib symlink 0777 0:0 -> usr/lib",
				"run dir 0755 0:0",
				"run/fifo fifo 0600 0:0",
			},
		},
		{
			name: "ownership, special mode bits and xattrs",
			layers: [][]E{{
				with(file("usr/bin/ping", "p"), func(h *tar.Header) {
					h.Mode, h.Uid, h.Gid = 0o4755, 0, 0
					h.PAXRecords = map[string]string{"SCHILY.xattr.security.capability": "\x01\x00\x00\x02", "SCHILY.xattr.user.k": "v", "comment": "not an xattr"}
				}),
				with(dir("tmp"), func(h *tar.Header) { h.Mode = 0o1777 }),
				with(file("home/u/f", "u"), func(h *tar.Header) { h.Uid, h.Gid, h.Mode = 1000, 100, 0o600 }),
			}},
			want: []string{
				". dir 0755 0:0",
				"home dir 0755 0:0",
				"home/u dir 0755 0:0",
				`home/u/f file 0600 1000:100 "u"`,
				"tmp dir 1777 0:0",
				"usr dir 0755 0:0",
				"usr/bin dir 0755 0:0",
				`usr/bin/ping file 4755 0:0 "p" xattr[security.capability="\x01\x00\x00\x02",user.k="v"]`,
			},
		},
		{
			name: "dir replaced by file and file by dir",
			layers: [][]E{
				{dir("x"), file("x/inner", "i"), file("y", "file")},
				{file("x", "now a file"), dir("y"), file("y/z", "z")},
			},
			want: []string{
				". dir 0755 0:0",
				`x file 0644 0:0 "now a file"`,
				"y dir 0755 0:0",
				`y/z file 0644 0:0 "z"`,
			},
		},
		{
			name: "dir header over dir changes metadata, keeps content",
			layers: [][]E{
				{dir("d"), file("d/f", "f")},
				{with(dir("d"), func(h *tar.Header) { h.Mode, h.Uid = 0o700, 5 })},
			},
			want: []string{". dir 0755 0:0", "d dir 0700 5:0", `d/f file 0644 0:0 "f"`},
		},
		{
			name: "names normalized like containerd",
			layers: [][]E{{
				dir("./"),
				file("/abs", "a"),
				file("./dot/./x", "x"),
				file("a/../b", "b"),
			}},
			want: []string{
				". dir 0755 0:0",
				`abs file 0644 0:0 "a"`,
				`b file 0644 0:0 "b"`,
				"dot dir 0755 0:0",
				`dot/x file 0644 0:0 "x"`,
			},
		},
		{
			name: "parent symlink followed inside the root",
			layers: [][]E{
				{dir("usr/lib"), symlink("lib", "/usr/lib"), symlink("up", "../../../usr")},
				{file("lib/libc.so", "c"), file("up/share", "s")},
			},
			want: []string{
				". dir 0755 0:0",
				"lib symlink 0777 0:0 -> /usr/lib",
				"up symlink 0777 0:0 -> ../../../usr",
				"usr dir 0755 0:0",
				"usr/lib dir 0755 0:0",
				`usr/lib/libc.so file 0644 0:0 "c"`,
				`usr/share file 0644 0:0 "s"`,
			},
		},
		{
			name: "hard link target through a symlinked parent",
			layers: [][]E{
				{file("usr/lib/x", "x"), symlink("lib", "usr/lib")},
				{link("y", "lib/x")},
			},
			want: []string{
				". dir 0755 0:0",
				"lib symlink 0777 0:0 -> usr/lib",
				"usr dir 0755 0:0",
				"usr/lib dir 0755 0:0",
				`usr/lib/x file 0644 0:0 "x" links=2`,
				`y file 0644 0:0 "x" links=2`,
			},
		},
		{
			name: "root metadata from ./ entry",
			layers: [][]E{
				{file("f", "f")},
				{with(dir("./"), func(h *tar.Header) { h.Mode = 0o700 })},
			},
			want: []string{". dir 0700 0:0", `f file 0644 0:0 "f"`},
		},
		{
			name:   "aufs metadata skipped",
			layers: [][]E{{dir(".wh..wh.plnk"), file(".wh..wh.plnk/123.456", "x"), file("ok", "1")}},
			want:   []string{". dir 0755 0:0", `ok file 0644 0:0 "1"`},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fl, err := flattenWith(t, layer.Options{Policy: tc.policy}, tc.layers...)
			if err != nil {
				t.Fatal(err)
			}
			got := dump(t, fl.Tree())
			if !slices.Equal(got, tc.want) {
				t.Errorf("tree:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

func TestFlattenErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		layers [][]E
		want   error
		entry  string
	}{
		{"dot-dot escape", [][]E{{file("../etc/passwd", "x")}}, layer.ErrUnsafePath, "../etc/passwd"},
		{"absolute dot-dot escape", [][]E{{file("/../../x", "x")}}, layer.ErrUnsafePath, "/../../x"},
		{"deep escape", [][]E{{file("a/../../x", "x")}}, layer.ErrUnsafePath, "a/../../x"},
		{"hard link target escapes", [][]E{{link("x", "../../etc/shadow")}}, layer.ErrUnsafePath, "x"},
		{"hard link to nothing", [][]E{{link("x", "missing")}}, layer.ErrBadLink, "x"},
		{"hard link to dir", [][]E{{dir("d"), link("x", "d")}}, layer.ErrBadLink, "x"},
		{"parent is a file", [][]E{{file("f", "f"), file("f/g", "g")}}, fstree.ErrNotDir, "f/g"},
		{"symlink loop", [][]E{{symlink("a", "b"), symlink("b", "a"), file("a/x", "x")}}, nil, "a/x"},
		{"whiteout of dot-dot", [][]E{{file("d/.wh...", "")}}, layer.ErrMalformed, "d/.wh..."},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := flatten(t, tc.layers...)
			if err == nil {
				t.Fatal("no error")
			}
			var ee *layer.EntryError
			if !errors.As(err, &ee) {
				t.Fatalf("error %v (%T) is not an *EntryError", err, err)
			}
			if ee.Entry != tc.entry || ee.Layer != fmt.Sprintf("sha256:layer%d", len(tc.layers)-1) {
				t.Errorf("EntryError names layer %q entry %q", ee.Layer, ee.Entry)
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("error %v does not wrap %v", err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.entry) {
				t.Errorf("message %q does not name the entry", err)
			}
		})
	}
}

// TestSparseRejected applies GNU tar's sparse files (1 GiB of hole in a
// 10 KiB archive, testdata made with "tar --sparse"), which would fill
// the spool with zeros if expanded.
func TestSparseRejected(t *testing.T) {
	for _, name := range []string{"testdata/sparse-pax.tar", "testdata/sparse-gnu.tar"} {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		fl, err := layer.New(layer.Options{SpoolDir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		err = fl.Apply(context.Background(), bytes.NewReader(b), name)
		fl.Close()
		if !errors.Is(err, layer.ErrUnsupported) {
			t.Errorf("%s: err = %v, want ErrUnsupported", name, err)
		}
	}
}

func TestTruncatedLayer(t *testing.T) {
	b, err := mkTar(file("big", strings.Repeat("x", 5000)))
	if err != nil {
		t.Fatal(err)
	}
	fl, err := layer.New(layer.Options{SpoolDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer fl.Close()
	if err := fl.Apply(context.Background(), bytes.NewReader(b[:2000]), "sha256:cut"); err == nil {
		t.Fatal("truncated layer applied without error")
	}
}

func TestCanceled(t *testing.T) {
	b, err := mkTar(file("a", "a"))
	if err != nil {
		t.Fatal(err)
	}
	fl, err := layer.New(layer.Options{SpoolDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer fl.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := fl.Apply(ctx, bytes.NewReader(b), "sha256:x"); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

// FuzzApply feeds arbitrary bytes to the flattener, as one layer over a
// small base: it must return, without panicking, and leave a tree that
// can be walked.
func FuzzApply(f *testing.F) {
	for _, l := range [][]E{
		{file("a/b", "x"), link("c", "a/b"), symlink("d", "/a")},
		{wh("a", ".wh..opq"), wh("", "c"), file("d/e", "through symlink")},
		{file("../x", "x")},
		{with(file("p", "p"), func(h *tar.Header) { h.PAXRecords = map[string]string{"SCHILY.xattr.user.a": "b"} })},
	} {
		b, err := mkTar(l...)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	base, err := mkTar(dir("a"), file("a/f", "f"), symlink("s", "a"), file("h", "h"))
	if err != nil {
		f.Fatal(err)
	}
	dirPath := f.TempDir()
	f.Fuzz(func(t *testing.T, b []byte) {
		fl, err := layer.New(layer.Options{SpoolDir: dirPath})
		if err != nil {
			t.Fatal(err)
		}
		defer fl.Close()
		if err := fl.Apply(context.Background(), bytes.NewReader(base), "base"); err != nil {
			t.Fatal(err)
		}
		fl.Apply(context.Background(), bytes.NewReader(b), "fuzz")
		if err := fl.Tree().Walk(func(p string, n *fstree.Inode) error {
			if n.Type == fstree.TypeRegular && n.Content != nil {
				rc, err := n.Content.Open()
				if err != nil {
					return err
				}
				defer rc.Close()
				if _, err := io.Copy(io.Discard, rc); err != nil {
					return fmt.Errorf("%s: %w", p, err)
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	})
}

func dev(typ byte, name string, major, minor int64) E {
	return E{Header: tar.Header{Typeflag: typ, Name: name, Mode: 0o666, Devmajor: major, Devminor: minor, ModTime: t0}}
}

func xattr(e E, kv ...string) E {
	return with(e, func(h *tar.Header) {
		h.PAXRecords = map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			h.PAXRecords["SCHILY.xattr."+kv[i]] = kv[i+1]
		}
	})
}

// TestPolicy checks what the build keeps of an image's privileges: device
// nodes (dropped by default, a hard link to one too, and a lower file
// they replace), overlayfs and LSM attributes (always dropped), file
// capabilities and setuid bits (kept unless asked).
func TestPolicy(t *testing.T) {
	suid := with(file("bin/su", "su"), func(h *tar.Header) { h.Mode = 0o4755 })
	attrs := xattr(file("f", "f"), "trusted.overlay.redirect", "/etc", "trusted.overlay.opaque", "y",
		"security.selinux", "system_u", "security.capability", "cap", "user.x", "1", "trusted.other", "2")
	lower := []E{file("dev/kmem", "was a file")}
	upper := []E{dev(tar.TypeBlock, "dev/nbd1", 43, 32), dev(tar.TypeChar, "dev/kmem", 1, 2), link("dev/nbd1-link", "dev/nbd1"), suid, attrs}
	for _, tc := range []struct {
		name   string
		policy layer.Policy
		want   []string
		stats  layer.Stats
	}{
		{"default", layer.Policy{}, []string{
			". dir 0755 0:0", "bin dir 0755 0:0", `bin/su file 4755 0:0 "su"`, "dev dir 0755 0:0",
			`f file 0644 0:0 "f" xattr[security.capability="cap",trusted.other="2",user.x="1"]`,
		}, layer.Stats{DroppedDevices: 3, DroppedXattrs: 3}},
		{"keep devices, drop setuid and caps", layer.Policy{KeepDevices: true, DropSetuid: true, DropCaps: true}, []string{
			". dir 0755 0:0", "bin dir 0755 0:0", `bin/su file 0755 0:0 "su"`, "dev dir 0755 0:0",
			"dev/kmem chardev 0666 0:0 1:2", "dev/nbd1 blockdev 0666 0:0 43:32", "dev/nbd1-link blockdev 0666 0:0 43:32",
			`f file 0644 0:0 "f" xattr[trusted.other="2",user.x="1"]`,
		}, layer.Stats{DroppedXattrs: 4, ClearedSetuid: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fl, err := flattenWith(t, layer.Options{Policy: tc.policy}, lower, upper)
			if err != nil {
				t.Fatal(err)
			}
			if got := dump(t, fl.Tree()); !slices.Equal(got, tc.want) {
				t.Errorf("tree:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
			if got := fl.Stats(); got != tc.stats {
				t.Errorf("stats %+v, want %+v", got, tc.stats)
			}
		})
	}
}

// TestLimits feeds each limit a crafted layer that goes over it: the
// flattener must stop at the offending entry, before reading its content
// or keeping its attributes, with a *LimitError inside an *EntryError
// naming the layer and the entry.
func TestLimits(t *testing.T) {
	many := make([]E, 0, 12)
	for i := range 12 {
		many = append(many, file(fmt.Sprintf("f%d", i), ""))
	}
	big := xattr(file("x", ""), "user.a", strings.Repeat("a", 100<<10))
	for _, tc := range []struct {
		name   string
		limits layer.Limits
		layers [][]E
		limit  string
		entry  string
	}{
		{"xattr value (default 64 KiB)", layer.Limits{}, [][]E{{big}}, layer.LimitXattrValue, "x"},
		{"xattr total", layer.Limits{MaxXattrTotal: 1000},
			[][]E{{xattr(file("a", ""), "user.a", strings.Repeat("a", 600))}, {xattr(file("b", ""), "user.b", strings.Repeat("b", 600))}},
			layer.LimitXattrTotal, "b"},
		{"entries", layer.Limits{MaxEntries: 10}, [][]E{many[:6], many[6:]}, layer.LimitEntries, "f10"},
		{"file size", layer.Limits{MaxFileSize: 1000}, [][]E{{file("small", "s"), file("big", strings.Repeat("b", 1001))}}, layer.LimitFileSize, "big"},
		{"total size", layer.Limits{MaxSize: 1000},
			[][]E{{file("a", strings.Repeat("a", 600))}, {file("b", strings.Repeat("b", 600))}}, layer.LimitSize, "b"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fl, err := flattenWith(t, layer.Options{Limits: tc.limits}, tc.layers...)
			var le *layer.LimitError
			var ee *layer.EntryError
			if !errors.As(err, &le) || !errors.As(err, &ee) || !errors.Is(err, layer.ErrLimit) {
				t.Fatalf("err = %v, want a *LimitError in an *EntryError", err)
			}
			if le.Limit != tc.limit || ee.Entry != tc.entry || ee.Layer != fmt.Sprintf("sha256:layer%d", len(tc.layers)-1) {
				t.Errorf("%v: limit %q layer %q entry %q, want %q, entry %q", err, le.Limit, ee.Layer, ee.Entry, tc.limit, tc.entry)
			}
			if le.Got <= le.Max {
				t.Errorf("%v: got %d within max %d", err, le.Got, le.Max)
			}
			for _, s := range []string{tc.limit, ee.Layer, tc.entry} {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("message %q does not name %q", err, s)
				}
			}
			// Nothing of the offending entry was spooled.
			var spooled int64
			for _, l := range tc.layers {
				for _, e := range l {
					if e.Name == tc.entry {
						break
					}
					spooled += e.Size
				}
			}
			if fl.SpoolSize() > spooled {
				t.Errorf("spooled %d bytes, more than the %d before the offending entry", fl.SpoolSize(), spooled)
			}
		})
	}
}

// TestLongPath refuses names longer than PATH_MAX, which would otherwise
// make one directory per component.
func TestLongPath(t *testing.T) {
	_, err := flatten(t, []E{file(strings.Repeat("a/", 3000)+"f", "")})
	if !errors.Is(err, layer.ErrMalformed) {
		t.Fatalf("err = %v, want ErrMalformed", err)
	}
}
