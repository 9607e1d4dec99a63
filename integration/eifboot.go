package integration

import (
	"context"
	_ "embed"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"

	"github.com/enclave-storage/enclave-storage/cpio"
	"github.com/enclave-storage/enclave-storage/eif"
)

//go:embed eifboot.sh
var eifbootScript []byte

// ParentRamdisk is the test-only archive the EIF-boot scenario appends
// after an EIF's ramdisks. Everything in it lives under /itest, except
// the replacement /init symlink and a /dev/null node.
//
// How it gets control without changing the EIF: the kernel unpacks the
// concatenated archives in order into one rootfs, later entries replacing
// earlier ones. The EIF's application ramdisk holds nbd-enclave at
// usr/bin/nbd-enclave and init as a symlink to it (eif.AppRamdisk); this
// archive's init, a symlink to /itest/init, replaces only that symlink
// (the kernel's unpacker, init/initramfs.c, unlinks the existing entry
// before it creates a symlink), so the EIF's binary stays where it is, byte for byte. The
// kernel command line is the EIF's, unchanged (no rdinit=). /itest/init
// starts the parent side and execs EIFInit, the EIF's original /init
// target, which so runs as PID 1 as it would in Nitro.
type ParentRamdisk struct {
	// Busybox is a statically linked busybox; "" means /bin/busybox.
	Busybox string
	// Modules are insmodded in order before anything starts: those the
	// parent side needs (vsock loopback, virtio, 9p). The enclave's own
	// come from the EIF (imgbuild --kernel-modules).
	Modules []Module
	// Commands maps a name in /itest/bin to a static binary on the host;
	// the script runs nbd-parent and heartbeat-echo.
	Commands map[string]string
	// Files maps a path under /itest to its content.
	Files map[string][]byte
	// EIFInit is the path the EIF's /init symlink names, run as PID 1.
	EIFInit string
}

// Write writes the archive, an uncompressed newc cpio as the EIF's own.
func (p *ParentRamdisk) Write(ctx context.Context, w io.Writer) error {
	var a cpio.Archive
	bb, err := staticBusybox(p.Busybox)
	if err != nil {
		return err
	}
	add := addFromHost(&a, "parent ramdisk")
	errs := []error{
		add("itest/bin/busybox", 0o755, bb),
		a.AddFile("itest/init", 0o755, eifbootScript),
		a.AddFile("itest/eif-init", 0o644, []byte(p.EIFInit)),
		a.AddSymlink("init", "itest/init"),
		// busybox sh opens /dev/null for background jobs; nbd-enclave
		// mounts devtmpfs over /dev later.
		a.AddDevice("dev/null", 0o666, true, 1, 3),
	}
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	if err := addModules(ctx, &a, "itest/modules.d/", "itest/modules", p.Modules); err != nil {
		return err
	}
	for _, name := range sortedKeys(p.Commands) {
		if err := checkStatic(p.Commands[name]); err != nil {
			return fmt.Errorf("integration: %s (build with CGO_ENABLED=0): %w", name, err)
		}
		if err := add("itest/bin/"+name, 0o755, p.Commands[name]); err != nil {
			return err
		}
	}
	for _, name := range sortedKeys(p.Files) {
		if err := a.AddFile(path.Join("itest", name), 0o600, p.Files[name]); err != nil {
			return err
		}
	}
	if _, err := a.Write(ctx, w); err != nil {
		return fmt.Errorf("integration: parent ramdisk: %w", err)
	}
	return nil
}

// EIFBoot is what QEMU needs to boot an EIF as Nitro would: its kernel
// section, its cmdline section, and its ramdisk sections concatenated in
// EIF order (Nitro loads them back to back as one initrd).
type EIFBoot struct {
	Kernel  string // file holding the kernel section
	Initrd  string // the ramdisk sections, then any extra archives
	Cmdline string // the cmdline section
	// Ramdisks are the sizes of the EIF's ramdisk sections, in order.
	Ramdisks []int64
}

// ExtractEIF reads the EIF at eifPath (package eif) and writes the kernel
// and the initrd into dir; extra archives (files) are appended to the
// initrd after the EIF's ramdisks.
func ExtractEIF(ctx context.Context, eifPath, dir string, extra ...string) (*EIFBoot, error) {
	f, err := os.Open(eifPath)
	if err != nil {
		return nil, fmt.Errorf("integration: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("integration: %w", err)
	}
	e, err := eif.ReadContext(ctx, f, st.Size())
	if err != nil {
		return nil, fmt.Errorf("integration: %s: %w", eifPath, err)
	}
	b := &EIFBoot{Kernel: filepath.Join(dir, "kernel"), Initrd: filepath.Join(dir, "initrd"), Cmdline: e.Cmdline}
	initrd, err := os.Create(b.Initrd)
	if err != nil {
		return nil, fmt.Errorf("integration: %w", err)
	}
	defer initrd.Close()
	kernels := 0
	for i, s := range e.Sections {
		switch s.Type {
		case eif.SectionKernel:
			kernels++
			if err := copyTo(b.Kernel, e.Open(i)); err != nil {
				return nil, err
			}
		case eif.SectionRamdisk:
			if _, err := io.Copy(initrd, e.Open(i)); err != nil {
				return nil, fmt.Errorf("integration: ramdisk section %d: %w", i, err)
			}
			b.Ramdisks = append(b.Ramdisks, s.Size)
		}
	}
	if kernels != 1 || len(b.Ramdisks) == 0 {
		return nil, fmt.Errorf("integration: %s: %d kernel and %d ramdisk sections", eifPath, kernels, len(b.Ramdisks))
	}
	// The kernel finds each newc header at a 4-byte aligned offset of the
	// whole initrd and skips zero bytes between archives.
	if off, err := initrd.Seek(0, io.SeekCurrent); err != nil {
		return nil, fmt.Errorf("integration: %w", err)
	} else if pad := (4 - off%4) % 4; pad != 0 && len(extra) > 0 {
		if _, err := initrd.Write(make([]byte, pad)); err != nil {
			return nil, fmt.Errorf("integration: %w", err)
		}
	}
	for _, x := range extra {
		xf, err := os.Open(x)
		if err != nil {
			return nil, fmt.Errorf("integration: %w", err)
		}
		_, err = io.Copy(initrd, xf)
		xf.Close()
		if err != nil {
			return nil, fmt.Errorf("integration: %w", err)
		}
	}
	return b, initrd.Close()
}

func copyTo(name string, r io.Reader) error {
	f, err := os.Create(name)
	if err != nil {
		return fmt.Errorf("integration: %w", err)
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return fmt.Errorf("integration: %w", err)
	}
	return f.Close()
}
