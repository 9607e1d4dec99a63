package imgbuild

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/enclave-storage/enclave-storage/cpio"
	"github.com/enclave-storage/enclave-storage/eif"
	"github.com/enclave-storage/enclave-storage/kmod"
)

// ModuleSet is what ModulesRamdisk put into the bootstrap ramdisk.
type ModuleSet struct {
	Release string        // the module tree's kernel release
	Modules []kmod.Module // in load order
	Bytes   int64         // size of the module files, decompressed
}

// ModulesRamdisk writes the kernel modules names need (see
// kmod.DefaultNames), resolved in the module tree dir, as a newc cpio
// archive: each module, decompressed, at lib/modules/KVER/PATH and the
// load order at kmod.OrderPath. When every module is built in, it writes
// nothing and returns an empty set.
//
// The modules go in the bootstrap (first) ramdisk, as nitro-cli puts
// nsm.ko there: modules belong to the kernel, and PCR1 measures the
// kernel, the command line and that ramdisk together, so PCR1 still
// identifies the kernel alone while PCR2 identifies the application.
func ModulesRamdisk(ctx context.Context, dir string, names []string, mtime int64, buf *bytes.Buffer) (*ModuleSet, error) {
	tree, err := kmod.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("imgbuild: kernel modules: %w", err)
	}
	mods, err := tree.Resolve(names)
	if err != nil {
		return nil, fmt.Errorf("imgbuild: kernel modules in %s: %w", tree.Dir, err)
	}
	set := &ModuleSet{Release: tree.Release, Modules: mods}
	if len(mods) == 0 {
		return set, nil
	}
	ar := cpio.Archive{ModTime: mtime}
	paths := make([]string, 0, len(mods))
	for _, m := range mods {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		b, err := tree.ReadModule(m)
		if err != nil {
			return nil, fmt.Errorf("imgbuild: %w", err)
		}
		p := kmod.RamdiskPath(tree.Release, m)
		if err := ar.AddFile(p, 0o444, b); err != nil {
			return nil, fmt.Errorf("imgbuild: kernel modules: %w", err)
		}
		paths = append(paths, p)
		set.Bytes += int64(len(b))
	}
	if err := ar.AddFile(kmod.OrderPath, 0o444, kmod.FormatOrder(paths)); err != nil {
		return nil, fmt.Errorf("imgbuild: kernel modules: %w", err)
	}
	if _, err := ar.Write(ctx, buf); err != nil {
		return nil, fmt.Errorf("imgbuild: kernel modules: %w", err)
	}
	return set, nil
}

// KernelRelease returns the release string of an x86 bzImage ("6.1.0-57-amd64"),
// read from the version string its setup header points to, or "" when
// the image has none (an arm64 Image, or not a bzImage).
func KernelRelease(kernel string) (string, error) {
	f, err := os.Open(kernel)
	if err != nil {
		return "", fmt.Errorf("imgbuild: %w", err)
	}
	defer f.Close()
	var hdr [0x210]byte
	if _, err := f.ReadAt(hdr[:], 0); err != nil || string(hdr[0x202:0x206]) != "HdrS" {
		return "", nil
	}
	off := int64(binary.LittleEndian.Uint16(hdr[0x20e:])) + 0x200
	var v [256]byte
	n, _ := f.ReadAt(v[:], off)
	s, _, ok := strings.Cut(string(v[:n]), "\x00")
	if !ok {
		return "", nil
	}
	if f := strings.Fields(s); len(f) > 0 {
		return f[0], nil
	}
	return "", nil
}

// bootstrapRamdisk returns the first ramdisk: the given bootstrap file or
// an empty cpio archive, followed, with kernel modules, by the modules'
// archive (the kernel unpacks concatenated archives, each starting at a
// multiple of 4 bytes, as one).
func bootstrapRamdisk(ctx context.Context, o EIFOptions, mtime int64) (eif.Blob, error) {
	if o.KernelModules == "" {
		if o.Bootstrap != "" {
			return openBlob(o.Bootstrap)
		}
		var b bytes.Buffer
		if _, err := (&cpio.Archive{ModTime: mtime}).Write(ctx, &b); err != nil {
			return nil, fmt.Errorf("imgbuild: empty bootstrap ramdisk: %w", err)
		}
		return bytes.NewReader(b.Bytes()), nil
	}
	if rel, err := KernelRelease(o.Kernel); err != nil {
		return nil, err
	} else if tree, err := kmod.Open(o.KernelModules); err != nil {
		return nil, fmt.Errorf("imgbuild: kernel modules: %w", err)
	} else if rel != "" && rel != tree.Release {
		return nil, fmt.Errorf("imgbuild: kernel %s is release %s but the modules in %s are for %s", o.Kernel, rel, tree.Dir, tree.Release)
	}
	var b bytes.Buffer
	if o.Bootstrap != "" {
		given, err := os.ReadFile(o.Bootstrap)
		if err != nil {
			return nil, fmt.Errorf("imgbuild: bootstrap ramdisk: %w", err)
		}
		b.Write(given)
		b.Write(make([]byte, (4-len(given)%4)%4))
	}
	names := o.ModuleNames
	if names == nil {
		names = kmod.DefaultNames()
	}
	set, err := ModulesRamdisk(ctx, o.KernelModules, names, mtime, &b)
	if err != nil {
		return nil, err
	}
	if b.Len() == 0 { // everything built in, no bootstrap given
		if _, err := (&cpio.Archive{ModTime: mtime}).Write(ctx, &b); err != nil {
			return nil, fmt.Errorf("imgbuild: empty bootstrap ramdisk: %w", err)
		}
	}
	if o.ModulesOut != nil {
		*o.ModulesOut = set
	}
	return bytes.NewReader(b.Bytes()), nil
}

// CarriedModule is a kernel module an EIF's ramdisks carry.
type CarriedModule struct {
	Name    string // canonical module name
	Path    string // in the ramdisk
	Ramdisk int    // 0 for the bootstrap ramdisk, 1 for the next...
	Size    int64  // -1 when the order file names a file no ramdisk holds
}

// EIFModules reads f's ramdisks back and returns the kernel modules
// listed in their load order file (kmod.OrderPath), in load order, with
// where and how large each is. An EIF without the order file carries no
// modules: nil, nil. Ramdisks that are not plain newc archives (a
// compressed bootstrap ramdisk) are an error.
func EIFModules(ctx context.Context, f *eif.File) ([]CarriedModule, error) {
	sizes := map[string]CarriedModule{}
	var order []string
	n := 0
	for i, s := range f.Sections {
		if s.Type != eif.SectionRamdisk {
			continue
		}
		r := cpio.NewReader(f.Open(i))
		for {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			h, err := r.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				return nil, fmt.Errorf("imgbuild: ramdisk %d: %w", n, err)
			}
			if h.Name == kmod.OrderPath {
				if order, err = kmod.ParseOrder(r); err != nil {
					return nil, fmt.Errorf("imgbuild: ramdisk %d: %w", n, err)
				}
			}
			if h.Mode.IsRegular() {
				sizes[h.Name] = CarriedModule{Ramdisk: n, Size: h.Size}
			}
		}
		n++
	}
	var mods []CarriedModule
	for _, p := range order {
		m, ok := sizes[p]
		if !ok {
			m.Size = -1
		}
		m.Name, m.Path = kmod.NameOf(p), p
		mods = append(mods, m)
	}
	return mods, nil
}

// eifFlags returns the EIF header flags for the kernel (FlagARM64 for an
// arm64 Image, as nitro-cli sets it), refusing a kernel whose architecture
// is not the image's platform's: the enclave could not run the image.
func eifFlags(kernel eif.Blob, platform string) (uint16, error) {
	flags := eif.KernelFlags(kernel)
	arch := "amd64"
	if flags&eif.FlagARM64 != 0 {
		arch = "arm64"
	}
	if p := strings.Split(platform, "/"); len(p) >= 2 && p[1] != arch {
		return 0, fmt.Errorf("imgbuild: the kernel is %s but the image's platform is %s", arch, platform)
	}
	return flags, nil
}

// kernelVersion is what nitro-cli writes as KernelVersion: the release's
// version number without the local suffix ("6.1.0" of
// "6.1.0-57-amd64"), or "" when the kernel does not say.
func kernelVersion(kernel string) string {
	rel, _ := KernelRelease(kernel)
	v, _, _ := strings.Cut(rel, "-")
	return v
}
