package pin

import (
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// Names of the pinned content. Ramdisk paths are relative to the ramdisk's
// root, which is the enclave's root at boot.
const (
	// CmdlineVerityRoot is the kernel command line parameter carrying the
	// dm-verity root hash in hex: enclave_storage.verity_root=<hex>.
	CmdlineVerityRoot = "enclave_storage.verity_root"
	// VerityPath holds the verity parameters JSON in the application ramdisk.
	VerityPath = "etc/enclave-storage/verity.json"
	// ConfigPath holds nbd-enclave's configuration JSON.
	ConfigPath = "etc/enclave-storage/config.json"
	// EnclavePath is the nbd-enclave binary.
	EnclavePath = "usr/bin/nbd-enclave"
	// InitPath is the symlink to EnclavePath that the kernel runs.
	InitPath = "init"
)

// ErrNoVerityRoot means a command line has no CmdlineVerityRoot parameter.
var ErrNoVerityRoot = errors.New("no " + CmdlineVerityRoot + " on the kernel command line")

// VerityRoot returns the root hash pinned in a kernel command line (such
// as /proc/cmdline). It fails with ErrNoVerityRoot when the parameter is
// absent and with an error when it appears twice or is not hex: the
// enclave must refuse to boot rather than guess.
func VerityRoot(cmdline string) ([]byte, error) {
	var found []string
	for _, f := range strings.Fields(cmdline) {
		if k, v, ok := strings.Cut(f, "="); ok && k == CmdlineVerityRoot {
			found = append(found, v)
		}
	}
	switch len(found) {
	case 0:
		return nil, ErrNoVerityRoot
	case 1:
	default:
		return nil, fmt.Errorf("%s given %d times on the kernel command line", CmdlineVerityRoot, len(found))
	}
	b, err := hex.DecodeString(found[0])
	if err != nil || len(b) == 0 {
		return nil, fmt.Errorf("%s=%q is not a hex hash", CmdlineVerityRoot, found[0])
	}
	return b, nil
}
