package integration

import (
	"compress/gzip"
	"context"
	"debug/elf"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/enclave-storage/enclave-storage/cpio"
)

//go:embed init.sh
var initScript []byte

// Initramfs is the content of the microVM's initramfs.
type Initramfs struct {
	// Busybox is a statically linked busybox; "" means /bin/busybox
	// (Debian's busybox-static).
	Busybox string
	// Modules are insmodded in order by /init.
	Modules []Module
	// Commands maps a name in the guest's /bin to a static binary on the host.
	Commands map[string]string
	// Tests maps a test name to a static test binary on the host; /init runs
	// them in name order, each in /pkg/NAME holding a copy of its package's
	// testdata directory.
	Tests map[string]TestBinary
	// TestArgs are passed to every test binary after -test.v.
	TestArgs []string
}

// Write writes the initramfs, a gzip-compressed newc cpio archive.
func (in *Initramfs) Write(ctx context.Context, w io.Writer) error {
	var a cpio.Archive
	bb, err := staticBusybox(in.Busybox)
	if err != nil {
		return err
	}
	add := addFromHost(&a, "initramfs")
	if err := add("bin/busybox", 0o755, bb); err != nil {
		return err
	}
	if err := a.AddFile("init", 0o755, initScript); err != nil {
		return err
	}
	for _, d := range []string{"proc", "sys", "dev", "tmp", "out", "etc", "root"} {
		if err := a.AddDir(d, 0o755); err != nil {
			return err
		}
	}
	// The kernel opens /dev/console for init's stdio before /init mounts
	// devtmpfs.
	if err := a.AddDevice("dev/console", 0o600, true, 5, 1); err != nil {
		return err
	}

	if err := addModules(ctx, &a, "lib/modules/", "etc/modules", in.Modules); err != nil {
		return err
	}
	if err := a.AddFile("etc/test-args", 0o644, []byte(strings.Join(in.TestArgs, " ")+"\n")); err != nil {
		return err
	}
	addBin := func(name, hostPath string) error {
		if err := checkStatic(hostPath); err != nil {
			return fmt.Errorf("integration: %s (build with CGO_ENABLED=0): %w", name, err)
		}
		return add(name, 0o755, hostPath)
	}
	for _, name := range sortedKeys(in.Commands) {
		if err := addBin("bin/"+name, in.Commands[name]); err != nil {
			return err
		}
	}
	for _, name := range sortedKeys(in.Tests) {
		tb := in.Tests[name]
		if err := addBin("tests/"+name+".test", tb.Path); err != nil {
			return err
		}
		if err := a.AddDir("pkg/"+name, 0o755); err != nil {
			return err
		}
		if tb.Dir != "" {
			if err := addTree(&a, "pkg/"+name+"/testdata", filepath.Join(tb.Dir, "testdata")); err != nil {
				return err
			}
		}
	}

	zw, err := gzip.NewWriterLevel(w, gzip.BestSpeed)
	if err != nil {
		return err
	}
	if _, err := a.Write(ctx, zw); err != nil {
		return fmt.Errorf("integration: initramfs: %w", err)
	}
	return zw.Close()
}

// staticBusybox returns bb, or /bin/busybox when bb is "", after checking
// it is statically linked.
func staticBusybox(bb string) (string, error) {
	if bb == "" {
		bb = "/bin/busybox"
	}
	if err := checkStatic(bb); err != nil {
		return "", fmt.Errorf("integration: busybox (install busybox-static): %w", err)
	}
	return bb, nil
}

// addFromHost returns a function that adds a host file to a; what names
// the archive in errors.
func addFromHost(a *cpio.Archive, what string) func(name string, perm os.FileMode, hostPath string) error {
	return func(name string, perm os.FileMode, hostPath string) error {
		b, err := os.ReadFile(hostPath)
		if err != nil {
			return fmt.Errorf("integration: %s: %w", what, err)
		}
		return a.AddFile(name, perm, b)
	}
}

// addModules adds the modules (decompressed) as dir+name and a list file
// of "/PATH PARAMS" lines, in load order, for the init script's insmod loop.
func addModules(ctx context.Context, a *cpio.Archive, dir, listFile string, mods []Module) error {
	var list strings.Builder
	for _, m := range mods {
		b, base, err := readModule(ctx, m.Path)
		if err != nil {
			return err
		}
		if err := a.AddFile(dir+base, 0o644, b); err != nil {
			return err
		}
		fmt.Fprintf(&list, "/%s %s\n", dir+base, m.Params)
	}
	return a.AddFile(listFile, 0o644, []byte(list.String()))
}

// WriteFile writes the initramfs to path.
func (in *Initramfs) WriteFile(ctx context.Context, path string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("integration: %w", err)
	}
	if err := in.Write(ctx, f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// readModule returns a module file's bytes, decompressed when the package
// ships it compressed (newer Debian kernels use .ko.xz): busybox insmod
// passes the bytes to init_module, which wants a plain ELF object. xz and
// zstd are run as tools because the standard library has neither codec.
func readModule(ctx context.Context, hostPath string) (data []byte, base string, err error) {
	base = filepath.Base(hostPath)
	var tool string
	switch {
	case strings.HasSuffix(base, ".ko.xz"):
		tool = "xz"
	case strings.HasSuffix(base, ".ko.zst"):
		tool = "zstd"
	case strings.HasSuffix(base, ".ko.gz"):
		tool = "gzip"
	default:
		b, err := os.ReadFile(hostPath)
		if err != nil {
			return nil, "", fmt.Errorf("integration: initramfs: %w", err)
		}
		return b, base, nil
	}
	out, err := exec.CommandContext(ctx, tool, "-dc", hostPath).Output()
	if err != nil {
		return nil, "", fmt.Errorf("integration: decompress module %s with %s: %w", hostPath, tool, err)
	}
	return out, strings.TrimSuffix(base, filepath.Ext(base)), nil
}

// checkStatic fails for an ELF file with a program interpreter: a
// dynamically linked binary cannot run in the initramfs, which has no libc.
func checkStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked", path)
		}
	}
	return nil
}

// addTree copies the regular files, directories and symlinks under hostDir
// (if it exists) to name in the archive.
func addTree(a *cpio.Archive, name, hostDir string) error {
	err := filepath.WalkDir(hostDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(hostDir, p)
		if err != nil {
			return err
		}
		dst := path.Join(name, filepath.ToSlash(rel))
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return a.AddDir(dst, info.Mode().Perm())
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return a.AddSymlink(dst, target)
		case d.Type().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			return a.AddFile(dst, info.Mode().Perm(), b)
		}
		return nil // devices, sockets: not test data
	})
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("integration: testdata %s: %w", hostDir, err)
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
