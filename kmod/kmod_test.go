package kmod

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const testTree = "testdata/tree"

func openTestTree(t *testing.T) *Tree {
	t.Helper()
	tr, err := Open(testTree)
	if err != nil {
		t.Fatal(err)
	}
	if tr.Release != "5.10.0-test" {
		t.Fatalf("release %q", tr.Release)
	}
	return tr
}

func names(mods []Module) []string {
	var n []string
	for _, m := range mods {
		n = append(n, m.Name)
	}
	return n
}

func TestResolve(t *testing.T) {
	tr := openTestTree(t)
	tests := []struct {
		name    string
		in      []string
		want    []string
		wantErr error
	}{
		{"deps first, each once", []string{"dm-verity", "dm_crypt"}, []string{"dm_mod", "dm_bufio", "dm_verity", "dm_crypt"}, nil},
		{"dash and underscore alike", []string{"dm_verity"}, []string{"dm_mod", "dm_bufio", "dm_verity"}, nil},
		{"built-ins skipped", []string{"ext4", "overlay", "nbd"}, []string{"nbd"}, nil},
		{"compressed module and its dependency", []string{"erofs"}, []string{"libcrc32c", "erofs"}, nil},
		{"chain through zstd", []string{"vsock_loopback"}, []string{"vsock", "vmw_vsock_virtio_transport_common", "vsock_loopback"}, nil},
		{"optional absent", []string{"nsm?", "xts"}, []string{"xts"}, nil},
		{"optional present", []string{"nbd?"}, []string{"nbd"}, nil},
		{"missing", []string{"nsm"}, nil, ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tr.Resolve(tt.in)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err %v, want %v", err, tt.wantErr)
			}
			if !slices.Equal(names(got), tt.want) {
				t.Errorf("got %v, want %v", names(got), tt.want)
			}
		})
	}
}

func TestParseDepRejects(t *testing.T) {
	tests := []struct {
		name, in string
		want     error
	}{
		{"no colon", "kernel/a.ko\n", ErrInvalid},
		{"absolute", "/kernel/a.ko:\n", ErrInvalid},
		{"escaping dep", "kernel/a.ko: ../b.ko\n", ErrInvalid},
		{"twice", "kernel/a.ko:\nkernel/a.ko:\n", ErrInvalid},
		{"not a module", "kernel/a.o:\n", ErrCompression},
		{"bz2", "kernel/a.ko.bz2:\n", ErrCompression},
		{"long line", "kernel/a.ko: " + strings.Repeat("x", MaxLine) + "\n", ErrInvalid},
		{"too many deps", "kernel/a.ko:" + strings.Repeat(" kernel/b.ko", MaxDeps+1) + "\n", ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ParseDep(strings.NewReader(tt.in)); !errors.Is(err, tt.want) {
				t.Errorf("err %v, want %v", err, tt.want)
			}
		})
	}
}

func TestResolveCycle(t *testing.T) {
	ix, err := ParseDep(strings.NewReader("a.ko: b.ko\nb.ko: a.ko\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ix.Resolve([]string{"a"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("cycle: err %v, want ErrInvalid", err)
	}
	ix, err = ParseDep(strings.NewReader("a.ko: c.ko\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ix.Resolve([]string{"a"}); !errors.Is(err, ErrNotFound) {
		t.Errorf("dangling dependency: err %v, want ErrNotFound", err)
	}
}

func TestReadModuleDecompresses(t *testing.T) {
	tr := openTestTree(t)
	mods, err := tr.Resolve([]string{"erofs", "vsock_loopback"})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range mods {
		b, err := tr.ReadModule(m)
		if err != nil {
			t.Fatal(err)
		}
		// Each fixture holds "\x7fELF fake module NAME\n", NAME as its
		// file is spelled.
		base := strings.TrimSuffix(filepath.Base(m.PlainPath()), ".ko")
		if want := "\x7fELF fake module " + base + "\n"; string(b) != want {
			t.Errorf("%s: %q, want %q", m.Path, b, want)
		}
		if strings.HasSuffix(RamdiskPath(tr.Release, m), ".ko") == false {
			t.Errorf("ramdisk path %s is not a plain .ko", RamdiskPath(tr.Release, m))
		}
	}
}

func TestOrderRoundTrip(t *testing.T) {
	in := []string{"lib/modules/6.1/kernel/a.ko", "lib/modules/6.1/kernel/b-c.ko"}
	got, err := ParseOrder(bytes.NewReader(FormatOrder(in)))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, in) {
		t.Errorf("got %v, want %v", got, in)
	}
	if _, err := ParseOrder(strings.NewReader("/abs/a.ko\n")); !errors.Is(err, ErrInvalid) {
		t.Errorf("absolute path: err %v", err)
	}
}

func TestParseNames(t *testing.T) {
	if got := ParseNames("nbd,dm-verity vsock_loopback"); !slices.Equal(got, []string{"nbd", "dm-verity", "vsock_loopback"}) {
		t.Errorf("replace: %v", got)
	}
	got := ParseNames("+vsock_loopback")
	if want := append(DefaultNames(), "vsock_loopback"); !slices.Equal(got, want) {
		t.Errorf("add: %v, want %v", got, want)
	}
}

// debianTree returns the module tree of the kernel integration/.cache holds
// (scripts/integration.sh downloads it), or skips.
func debianTree(t *testing.T) *Tree {
	t.Helper()
	found, _ := filepath.Glob("../integration/.cache/linux-image-*/lib/modules/*/modules.dep")
	if len(found) == 0 {
		t.Skip("no Debian kernel in integration/.cache (scripts/integration.sh fetches it)")
	}
	dir, err := filepath.Abs(filepath.Dir(found[0]))
	if err != nil {
		t.Fatal(err)
	}
	tr, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// TestResolveDebianAgainstModprobe resolves the default modules (plus the
// test VM's vsock_loopback) in Debian's real tree and checks the result
// against modprobe --show-depends, written by others: the same modules,
// and each of a module's dependencies before it.
func TestResolveDebianAgainstModprobe(t *testing.T) {
	tr := debianTree(t)
	modprobe, err := exec.LookPath("modprobe")
	if err != nil {
		if modprobe, err = exec.LookPath("/usr/sbin/modprobe"); err != nil {
			t.Skip("modprobe not installed (apt-get install kmod)")
		}
	}
	req := ParseNames("+vsock_loopback")
	mods, err := tr.Resolve(req)
	if err != nil {
		t.Fatal(err)
	}
	pos := map[string]int{}
	for i, m := range mods {
		pos[m.Path] = i
	}
	root := filepath.Dir(filepath.Dir(filepath.Dir(tr.Dir)))
	want := map[string]bool{}
	for _, n := range req {
		n, optional := strings.CutSuffix(n, "?")
		out, err := exec.Command(modprobe, "-C", os.DevNull, "-d", root, "-S", tr.Release, "--show-depends", n).CombinedOutput()
		if err != nil {
			if optional {
				continue
			}
			t.Fatalf("modprobe --show-depends %s: %v\n%s", n, err, out)
		}
		var chain []string
		sc := bufio.NewScanner(bytes.NewReader(out))
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) < 2 || f[0] != "insmod" {
				continue
			}
			rel, err := filepath.Rel(tr.Dir, f[1])
			if err != nil {
				t.Fatal(err)
			}
			want[rel] = true
			chain = append(chain, rel)
		}
		// modprobe prints dependencies before their users.
		for i := 1; i < len(chain); i++ {
			for _, dep := range tr.deps[chain[i]] {
				if pos[dep] > pos[chain[i]] {
					t.Errorf("%s loads before its dependency %s", chain[i], dep)
				}
			}
		}
	}
	for _, m := range mods {
		if !want[m.Path] {
			t.Errorf("%s resolved but not in modprobe's list", m.Path)
		}
		delete(want, m.Path)
	}
	// modprobe also follows soft dependencies (ext4's "pre: crc32c"),
	// which we leave to explicit names; anything else it lists must not
	// be a hard dependency of what we resolved.
	for extra := range want {
		for _, m := range mods {
			if slices.Contains(tr.deps[m.Path], extra) {
				t.Errorf("modprobe loads %s, a dependency of %s we missed", extra, m.Path)
			}
		}
		t.Logf("modprobe adds %s (a soft dependency)", extra)
	}
	t.Logf("Debian %s: %d modules for %v", tr.Release, len(mods), req)
}

func FuzzParseDep(f *testing.F) {
	seed, err := os.ReadFile(filepath.Join(testTree, "lib/modules/5.10.0-test/modules.dep"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed, "dm-verity,erofs")
	f.Add([]byte("a.ko: b.ko\nb.ko: a.ko\n"), "a")
	f.Add([]byte("a.ko:\n:\n"), "a?")
	f.Fuzz(func(t *testing.T, data []byte, req string) {
		ix, err := ParseDep(bytes.NewReader(data))
		if err != nil {
			return
		}
		mods, err := ix.Resolve(ParseNames(req))
		if err != nil {
			return
		}
		seen := map[string]bool{}
		for _, m := range mods {
			if seen[m.Path] {
				t.Fatalf("%s resolved twice", m.Path)
			}
			for _, d := range ix.deps[m.Path] {
				if _, ok := ix.deps[d]; ok && !seen[d] {
					t.Fatalf("%s before its dependency %s", m.Path, d)
				}
			}
			seen[m.Path] = true
		}
	})
}

func FuzzParseOrder(f *testing.F) {
	f.Add(FormatOrder([]string{"lib/modules/6.1/kernel/a.ko"}))
	f.Add([]byte("# c\n\n/x.ko\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		paths, err := ParseOrder(bytes.NewReader(data))
		if err != nil {
			return
		}
		again, err := ParseOrder(bytes.NewReader(FormatOrder(paths)))
		if err != nil || !slices.Equal(again, paths) {
			t.Fatalf("round trip: %v %v != %v", err, again, paths)
		}
	})
}
