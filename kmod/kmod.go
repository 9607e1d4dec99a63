package kmod

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// Bounds on the module tree's index files and modules, checked before
// anything is allocated for them.
const (
	// MaxIndexSize bounds modules.dep and modules.builtin (Debian's
	// modules.dep is about 400 KiB).
	MaxIndexSize = 16 << 20
	// MaxLine bounds one line of an index file.
	MaxLine = 64 << 10
	// MaxModules bounds the entries of an index file.
	MaxModules = 100_000
	// MaxDeps bounds the dependencies listed for one module.
	MaxDeps = 1024
	// MaxModuleSize bounds one module file, decompressed.
	MaxModuleSize = 64 << 20
)

// OrderPath is the load order file in the ramdisk, relative to its root:
// one module path (relative to the root too) per line, in load order.
const OrderPath = "etc/enclave-storage/modules.load"

var (
	// ErrNotFound means a required module is neither in modules.dep nor
	// built in.
	ErrNotFound = errors.New("kmod: module not found")
	// ErrInvalid means an index file or order file is malformed or too
	// large.
	ErrInvalid = errors.New("kmod: invalid module index")
	// ErrCompression means a module file has a suffix we cannot read.
	ErrCompression = errors.New("kmod: unsupported module compression")
)

// DefaultNames returns the modules nbd-enclave needs on a Nitro enclave:
// the crypto first (crc32c, which libcrc32c, jbd2 and ext4 ask the crypto
// API for as they load, and the XTS and ECB modes dm-crypt uses), then
// NBD, dm-verity and dm-crypt, vsock with the virtio transport Nitro uses
// (virtio over MMIO), the filesystems (overlay, erofs, ext4), and the NSM
// driver when the kernel has it. A test VM whose parent runs in the same
// guest needs vsock_loopback instead of (or besides) the virtio
// transport: add it with "+vsock_loopback" on imgbuild's
// --kernel-module-names.
func DefaultNames() []string {
	return []string{
		"crc32c_generic", "xts", "ecb",
		"nbd", "dm-verity", "dm-crypt",
		"vsock", "virtio_mmio?", "vmw_vsock_virtio_transport",
		"overlay", "erofs", "ext4",
		"nsm?",
	}
}

// ParseNames parses a comma- or space-separated list of module names.
// A list starting with '+' adds to DefaultNames instead of replacing it.
func ParseNames(list string) []string {
	var names []string
	add := strings.HasPrefix(strings.TrimSpace(list), "+")
	if add {
		names = DefaultNames()
	}
	sep := func(r rune) bool { return r == ',' || r == ' ' || r == '+' }
	return append(names, strings.FieldsFunc(list, sep)...)
}

// Normalize returns a module's canonical name: '-' spelled '_', as the
// kernel spells it in /proc/modules.
func Normalize(name string) string { return strings.ReplaceAll(name, "-", "_") }

// compressions are the module file suffixes ReadModule understands.
var compressions = []string{".ko", ".ko.xz", ".ko.zst", ".ko.gz"}

// NameOf returns the canonical module name of a module file path
// ("kernel/drivers/md/dm-verity.ko.xz" is "dm_verity"), or "" when the
// path is not a module file.
func NameOf(p string) string {
	b := path.Base(p)
	for _, s := range compressions {
		if n, ok := strings.CutSuffix(b, s); ok && n != "" {
			return Normalize(n)
		}
	}
	return ""
}

// Module is one module file of a tree.
type Module struct {
	Name string // canonical name (Normalize)
	Path string // relative to the tree, as modules.dep spells it
}

// PlainPath returns Path with any compression suffix replaced by ".ko".
func (m Module) PlainPath() string {
	for _, s := range compressions[1:] {
		if p, ok := strings.CutSuffix(m.Path, s); ok {
			return p + ".ko"
		}
	}
	return m.Path
}

// Index is a parsed modules.dep (and modules.builtin).
type Index struct {
	deps    map[string][]string // path -> dependency paths
	byName  map[string]string   // canonical name -> path
	builtin map[string]bool     // canonical names
}

// ParseDep parses modules.dep: lines "path: dep dep ...", paths relative
// to the module directory. It rejects input over MaxIndexSize, lines over
// MaxLine, more than MaxModules entries or MaxDeps dependencies, absolute
// or escaping paths, and names that are not module files.
func ParseDep(r io.Reader) (*Index, error) {
	ix := &Index{deps: map[string][]string{}, byName: map[string]string{}, builtin: map[string]bool{}}
	err := scanIndex(r, "modules.dep", func(n int, line string) error {
		p, rest, ok := strings.Cut(line, ":")
		if !ok {
			return fmt.Errorf("%w: modules.dep line %d: no ':'", ErrInvalid, n)
		}
		p = strings.TrimSpace(p)
		if err := checkPath(p); err != nil {
			return fmt.Errorf("modules.dep line %d: %w", n, err)
		}
		if _, dup := ix.deps[p]; dup {
			return fmt.Errorf("%w: modules.dep line %d: %s listed twice", ErrInvalid, n, p)
		}
		deps := strings.Fields(rest)
		if len(deps) > MaxDeps {
			return fmt.Errorf("%w: modules.dep line %d: %d dependencies (max %d)", ErrInvalid, n, len(deps), MaxDeps)
		}
		for _, d := range deps {
			if err := checkPath(d); err != nil {
				return fmt.Errorf("modules.dep line %d: %w", n, err)
			}
		}
		ix.deps[p] = deps
		if _, dup := ix.byName[NameOf(p)]; !dup {
			ix.byName[NameOf(p)] = p
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return ix, nil
}

// ParseBuiltin adds modules.builtin's names (one module path per line) to
// ix, with the same bounds as ParseDep.
func (ix *Index) ParseBuiltin(r io.Reader) error {
	return scanIndex(r, "modules.builtin", func(n int, line string) error {
		p := strings.TrimSpace(line)
		if err := checkPath(p); err != nil {
			return fmt.Errorf("modules.builtin line %d: %w", n, err)
		}
		ix.builtin[NameOf(p)] = true
		return nil
	})
}

// scanIndex calls f for each non-empty line of an index file, enforcing
// the size, line and entry bounds.
func scanIndex(r io.Reader, file string, f func(n int, line string) error) error {
	lr := &io.LimitedReader{R: r, N: MaxIndexSize + 1}
	sc := bufio.NewScanner(lr)
	sc.Buffer(make([]byte, 0, 4096), MaxLine)
	n, entries := 0, 0
	for sc.Scan() {
		n++
		line := sc.Text()
		if strings.TrimSpace(line) == "" {
			continue
		}
		if entries++; entries > MaxModules {
			return fmt.Errorf("%w: %s has more than %d entries", ErrInvalid, file, MaxModules)
		}
		if err := f(n, line); err != nil {
			return err
		}
	}
	if lr.N == 0 {
		return fmt.Errorf("%w: %s is larger than %d bytes", ErrInvalid, file, MaxIndexSize)
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("%w: %s line %d: %w", ErrInvalid, file, n+1, err)
	}
	return nil
}

// checkPath accepts a clean relative path naming a module file.
func checkPath(p string) error {
	if p == "" || path.IsAbs(p) || path.Clean(p) != p || p == ".." || strings.HasPrefix(p, "../") || strings.ContainsAny(p, "\x00\\") {
		return fmt.Errorf("%w: bad module path %q", ErrInvalid, p)
	}
	if NameOf(p) == "" {
		return fmt.Errorf("%w: %q is not a module file (%s)", ErrCompression, p, strings.Join(compressions, ", "))
	}
	return nil
}

// Builtin reports whether the named module is built into the kernel.
func (ix *Index) Builtin(name string) bool { return ix.builtin[Normalize(name)] }

// Resolve returns the modules to load for names, dependencies first and
// each once, in a deterministic order: the names in the order given, each
// preceded by what it needs that is not already listed. Built-in modules
// are skipped; a name with a trailing '?' is skipped when absent, any
// other absent name is ErrNotFound.
func (ix *Index) Resolve(names []string) ([]Module, error) {
	var out []Module
	done := map[string]bool{}
	onPath := map[string]bool{}
	var visit func(p string, chain []string) error
	visit = func(p string, chain []string) error {
		if done[p] {
			return nil
		}
		if onPath[p] {
			return fmt.Errorf("%w: dependency cycle %s -> %s", ErrInvalid, strings.Join(chain, " -> "), p)
		}
		deps, ok := ix.deps[p]
		if !ok {
			if ix.builtin[NameOf(p)] {
				done[p] = true
				return nil
			}
			return fmt.Errorf("%w: %s (a dependency of %s) is not in modules.dep", ErrNotFound, p, chain[len(chain)-1])
		}
		onPath[p] = true
		// modprobe loads a module's dependency list from its end.
		for _, d := range slices.Backward(deps) {
			if err := visit(d, append(chain, p)); err != nil {
				return err
			}
		}
		onPath[p] = false
		done[p] = true
		out = append(out, Module{Name: NameOf(p), Path: p})
		return nil
	}
	for _, raw := range names {
		name, optional := strings.CutSuffix(strings.TrimSpace(raw), "?")
		if name == "" {
			continue
		}
		n := Normalize(name)
		p, ok := ix.byName[n]
		if !ok {
			if ix.builtin[n] || optional {
				continue
			}
			return nil, fmt.Errorf("%w: %s is neither in modules.dep nor in modules.builtin", ErrNotFound, name)
		}
		if err := visit(p, []string{name}); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Tree is a kernel's module directory, /lib/modules/KVER.
type Tree struct {
	Dir     string // the module directory
	Release string // KVER, its base name
	*Index
}

// Open opens a module tree: dir is either /lib/modules/KVER itself (it
// holds modules.dep) or a root holding exactly one lib/modules/KVER, such
// as an unpacked linux-image package. modules.builtin is optional.
func Open(dir string) (*Tree, error) {
	mdir := dir
	if _, err := os.Stat(filepath.Join(dir, "modules.dep")); err != nil {
		found, _ := filepath.Glob(filepath.Join(dir, "lib", "modules", "*", "modules.dep"))
		if len(found) != 1 {
			return nil, fmt.Errorf("kmod: %s: neither a lib/modules/KVER directory (no modules.dep) nor a root with exactly one lib/modules/KVER (found %d)", dir, len(found))
		}
		mdir = filepath.Dir(found[0])
	}
	t := &Tree{Dir: mdir, Release: filepath.Base(mdir)}
	f, err := os.Open(filepath.Join(mdir, "modules.dep"))
	if err != nil {
		return nil, fmt.Errorf("kmod: %w", err)
	}
	defer f.Close()
	if t.Index, err = ParseDep(f); err != nil {
		return nil, fmt.Errorf("kmod: %s: %w", mdir, err)
	}
	b, err := os.Open(filepath.Join(mdir, "modules.builtin"))
	if errors.Is(err, os.ErrNotExist) {
		return t, nil
	}
	if err != nil {
		return nil, fmt.Errorf("kmod: %w", err)
	}
	defer b.Close()
	if err := t.ParseBuiltin(b); err != nil {
		return nil, fmt.Errorf("kmod: %s: %w", mdir, err)
	}
	return t, nil
}

// ReadModule returns a module file's contents, decompressed, at most
// MaxModuleSize bytes.
func (t *Tree) ReadModule(m Module) ([]byte, error) {
	f, err := os.Open(filepath.Join(t.Dir, filepath.FromSlash(m.Path)))
	if err != nil {
		return nil, fmt.Errorf("kmod: module %s: %w", m.Name, err)
	}
	defer f.Close()
	var r io.Reader
	switch {
	case strings.HasSuffix(m.Path, ".ko"):
		r = f
	case strings.HasSuffix(m.Path, ".ko.xz"):
		if r, err = xz.NewReader(f); err != nil {
			return nil, fmt.Errorf("kmod: module %s: %w", m.Name, err)
		}
	case strings.HasSuffix(m.Path, ".ko.zst"):
		d, err := zstd.NewReader(f, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(2*MaxModuleSize))
		if err != nil {
			return nil, fmt.Errorf("kmod: module %s: %w", m.Name, err)
		}
		defer d.Close()
		r = d
	case strings.HasSuffix(m.Path, ".ko.gz"):
		if r, err = gzip.NewReader(f); err != nil {
			return nil, fmt.Errorf("kmod: module %s: %w", m.Name, err)
		}
	default:
		return nil, fmt.Errorf("%w: %s", ErrCompression, m.Path)
	}
	b, err := io.ReadAll(io.LimitReader(r, MaxModuleSize+1))
	if err != nil {
		return nil, fmt.Errorf("kmod: module %s: %w", m.Name, err)
	}
	if len(b) > MaxModuleSize {
		return nil, fmt.Errorf("%w: module %s is larger than %d bytes", ErrInvalid, m.Name, MaxModuleSize)
	}
	if !bytes.HasPrefix(b, []byte("\x7fELF")) {
		return nil, fmt.Errorf("%w: module %s (%s) is not an ELF file", ErrInvalid, m.Name, m.Path)
	}
	return b, nil
}

// RamdiskPath is where a module of a tree of the given release is stored
// in the ramdisk, relative to its root: lib/modules/KVER/PATH, always
// uncompressed.
func RamdiskPath(release string, m Module) string {
	return path.Join("lib/modules", release, m.PlainPath())
}

// FormatOrder returns the order file's content for paths (relative to the
// ramdisk root, in load order).
func FormatOrder(paths []string) []byte {
	var b bytes.Buffer
	b.WriteString("# kernel modules nbd-enclave loads, in order (written by imgbuild)\n")
	for _, p := range paths {
		b.WriteString(p)
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// ParseOrder parses an order file: one relative module path per line,
// '#' comments and blank lines ignored, bounded like the index files.
func ParseOrder(r io.Reader) ([]string, error) {
	var paths []string
	err := scanIndex(r, OrderPath, func(n int, line string) error {
		p := strings.TrimSpace(line)
		if strings.HasPrefix(p, "#") {
			return nil
		}
		if err := checkPath(p); err != nil {
			return fmt.Errorf("%s line %d: %w", OrderPath, n, err)
		}
		paths = append(paths, p)
		return nil
	})
	return paths, err
}
