package eif

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"

	"github.com/enclave-storage/enclave-storage/cpio"
	"github.com/enclave-storage/enclave-storage/pin"
)

// How the root filesystem is pinned into measured EIF content; see the
// package documentation. The names live in package pin, which the enclave
// side shares without linking this builder.
const (
	// CmdlineVerityRoot is the kernel command line parameter carrying the
	// dm-verity root hash in hex: enclave_storage.verity_root=<hex>.
	CmdlineVerityRoot = pin.CmdlineVerityRoot
	// RamdiskVerityPath holds the verity parameters JSON (as written by
	// imgbuild next to rootfs.img) in the application ramdisk.
	RamdiskVerityPath = pin.VerityPath
	// RamdiskConfigPath holds nbd-enclave's configuration JSON.
	RamdiskConfigPath = pin.ConfigPath
	// RamdiskEnclavePath is the nbd-enclave binary.
	RamdiskEnclavePath = pin.EnclavePath
	// RamdiskInitPath is the symlink to RamdiskEnclavePath the kernel runs.
	RamdiskInitPath = pin.InitPath
)

// PinCmdline returns cmdline with CmdlineVerityRoot=<hex rootHash>
// appended. It fails if cmdline already names a root hash, so a base
// command line cannot smuggle in a second, conflicting one.
func PinCmdline(cmdline string, rootHash []byte) (string, error) {
	if len(rootHash) == 0 {
		return "", fmt.Errorf("%w: empty verity root hash", ErrInvalidSpec)
	}
	for _, f := range strings.Fields(cmdline) {
		if k, _, _ := strings.Cut(f, "="); k == CmdlineVerityRoot {
			return "", fmt.Errorf("%w: cmdline already has %s", ErrInvalidSpec, f)
		}
	}
	p := CmdlineVerityRoot + "=" + hex.EncodeToString(rootHash)
	if c := strings.TrimSpace(cmdline); c != "" {
		return c + " " + p, nil
	}
	return p, nil
}

// AppRamdisk is the content of the application ramdisk (the second one,
// measured into PCR2) that carries nbd-enclave and what it must trust.
type AppRamdisk struct {
	// Enclave is the nbd-enclave executable, statically linked.
	Enclave []byte
	// VerityJSON is the verity parameters JSON of the root filesystem.
	VerityJSON []byte
	// ConfigJSON is nbd-enclave's configuration; nil leaves it out.
	ConfigJSON []byte
	// ModTime stamps every entry (seconds since the epoch); use
	// SOURCE_DATE_EPOCH or 0.
	ModTime int64
}

// Write writes the ramdisk as a reproducible newc cpio archive:
//
//	init -> usr/bin/nbd-enclave
//	usr/bin/nbd-enclave                (0755)
//	etc/enclave-storage/verity.json    (0444)
//	etc/enclave-storage/config.json    (0444, if given)
//	dev/console (c 5 1), proc/, sys/, tmp/ (1777)
//
// dev/console lets the kernel give init a console before any devtmpfs is
// mounted; the empty directories are mount points.
func (a *AppRamdisk) Write(ctx context.Context, w io.Writer) error {
	if len(a.Enclave) == 0 {
		return fmt.Errorf("%w: app ramdisk has no nbd-enclave binary", ErrInvalidSpec)
	}
	if !json.Valid(a.VerityJSON) {
		return fmt.Errorf("%w: verity parameters are not valid JSON", ErrInvalidSpec)
	}
	if a.ConfigJSON != nil && !json.Valid(a.ConfigJSON) {
		return fmt.Errorf("%w: enclave config is not valid JSON", ErrInvalidSpec)
	}
	ar := cpio.Archive{ModTime: a.ModTime}
	add := []error{
		ar.AddFile(RamdiskEnclavePath, 0o755, a.Enclave),
		ar.AddSymlink(RamdiskInitPath, RamdiskEnclavePath),
		ar.AddFile(RamdiskVerityPath, 0o444, a.VerityJSON),
		ar.AddDevice("dev/console", 0o600, true, 5, 1),
		ar.AddDir("proc", 0o555),
		ar.AddDir("sys", 0o555),
		ar.AddDir("tmp", 0o777|fs.ModeSticky),
	}
	if a.ConfigJSON != nil {
		add = append(add, ar.AddFile(RamdiskConfigPath, 0o444, a.ConfigJSON))
	}
	if err := errors.Join(add...); err != nil {
		return fmt.Errorf("eif: app ramdisk: %w", err)
	}
	if _, err := ar.Write(ctx, w); err != nil {
		return fmt.Errorf("eif: writing app ramdisk: %w", err)
	}
	return nil
}
