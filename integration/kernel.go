package integration

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Kernel is an unpacked Debian kernel package.
type Kernel struct {
	Release string // e.g. "6.1.0-56-amd64", the modules directory name
	Image   string // path of vmlinuz
	Root    string // directory holding lib/modules/Release
}

// DefaultModules returns the modules the microVM loads; Kernel.ModulePaths
// adds what each depends on. The virtio ones carry the extra drives and the
// 9p share.
func DefaultModules() []string {
	return []string{
		"dm-verity", "dm-crypt", "nbd",
		"vsock", "vmw_vsock_virtio_transport_common", "vsock_loopback",
		"overlay", "erofs", "crc32c_generic", "ext4", "ecb", "xts", "loop",
		"virtio_pci", "virtio_blk", "9pnet_virtio", "9p",
	}
}

// FetchKernel returns the kernel of Debian's linux-image-amd64, downloading
// and unpacking the versioned package it depends on into cacheDir the first
// time (needs apt-get update to have run; no root needed for download).
func FetchKernel(ctx context.Context, cacheDir string) (*Kernel, error) {
	pkg, err := kernelPackage(ctx)
	if err != nil {
		return nil, err
	}
	release := strings.TrimPrefix(pkg, "linux-image-")
	root := filepath.Join(cacheDir, pkg)
	k := &Kernel{Release: release, Image: filepath.Join(root, "boot", "vmlinuz-"+release), Root: root}
	if _, err := os.Stat(filepath.Join(root, "lib", "modules", release, "modules.dep")); err == nil {
		return k, nil
	}

	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return nil, fmt.Errorf("integration: kernel cache: %w", err)
	}
	debs, _ := filepath.Glob(filepath.Join(cacheDir, pkg+"_*.deb"))
	if len(debs) == 0 {
		if out, err := run(ctx, cacheDir, "apt-get", "download", pkg); err != nil {
			return nil, fmt.Errorf("integration: apt-get download %s (did apt-get update run?): %w\n%s", pkg, err, out)
		}
		debs, _ = filepath.Glob(filepath.Join(cacheDir, pkg+"_*.deb"))
		if len(debs) == 0 {
			return nil, fmt.Errorf("integration: apt-get download %s left no .deb in %s", pkg, cacheDir)
		}
	}
	// Unpack beside the final directory and rename, so an interrupted run
	// never leaves a half-unpacked cache that looks complete.
	tmp := root + ".tmp"
	os.RemoveAll(tmp)
	if out, err := run(ctx, "", "dpkg-deb", "-x", debs[0], tmp); err != nil {
		return nil, fmt.Errorf("integration: unpack %s: %w\n%s", debs[0], err, out)
	}
	if out, err := run(ctx, "", "depmod", "-b", tmp, release); err != nil {
		return nil, fmt.Errorf("integration: depmod %s: %w\n%s", release, err, out)
	}
	os.RemoveAll(root)
	if err := os.Rename(tmp, root); err != nil {
		return nil, fmt.Errorf("integration: kernel cache: %w", err)
	}
	return k, nil
}

// kernelPackage resolves linux-image-amd64 to the versioned package it
// depends on, e.g. linux-image-6.1.0-56-amd64.
func kernelPackage(ctx context.Context) (string, error) {
	out, err := run(ctx, "", "apt-cache", "depends", "linux-image-amd64")
	if err != nil {
		return "", fmt.Errorf("integration: apt-cache depends linux-image-amd64 (is this Debian, did apt-get update run?): %w\n%s", err, out)
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 2 && f[0] == "Depends:" && strings.HasPrefix(f[1], "linux-image-") && strings.HasSuffix(f[1], "-amd64") {
			return f[1], nil
		}
	}
	return "", fmt.Errorf("integration: no linux-image-*-amd64 dependency in apt-cache output:\n%s", out)
}

// Module is one kernel module to load, with its parameters.
type Module struct {
	Path   string // on the host
	Params string // e.g. "max_part=15"
}

// ModulePaths returns the modules to insmod, dependencies first and each
// once, for the named modules (modprobe --show-depends against the unpacked
// tree; built-in modules need nothing).
func (k *Kernel) ModulePaths(ctx context.Context, names ...string) ([]Module, error) {
	var mods []Module
	seen := map[string]bool{}
	for _, name := range names {
		// -C /dev/null: the host's modprobe.d options are not the VM's.
		out, err := run(ctx, "", "modprobe", "-C", os.DevNull, "-d", k.Root, "-S", k.Release, "--show-depends", name)
		if err != nil {
			return nil, fmt.Errorf("integration: modprobe --show-depends %s: %w\n%s", name, err, out)
		}
		sc := bufio.NewScanner(bytes.NewReader(out))
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) < 2 || f[0] != "insmod" || seen[f[1]] {
				continue // "builtin NAME" lines need no loading
			}
			seen[f[1]] = true
			mods = append(mods, Module{Path: f[1], Params: strings.Join(f[2:], " ")})
		}
	}
	if len(mods) == 0 && len(names) > 0 {
		return nil, errors.New("integration: modprobe listed no modules")
	}
	return mods, nil
}

// run runs a command and returns its combined output.
func run(ctx context.Context, dir, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	return cmd.CombinedOutput()
}
