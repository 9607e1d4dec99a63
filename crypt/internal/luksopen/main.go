// Command luksopen unlocks a LUKS2 header with crypt.Open and exits: the
// counterpart of `cryptsetup open --test-passphrase`, for
// scripts/bench-crypt.sh to time both the same way (one process per
// unlock). It prints nothing on success unless -v is given.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/enclave-storage/enclave-storage/crypt"
)

func main() {
	keyFile := flag.String("key-file", "", "file holding the passphrase (required)")
	verbose := flag.Bool("v", false, "print the unlocked keyslot and dm-crypt parameters (key elided)")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: luksopen -key-file FILE [-v] DEVICE\n\nUnlocks the LUKS2 header on DEVICE and exits 0, or prints why not and exits 1.\n\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if *keyFile == "" || flag.NArg() != 1 {
		flag.Usage()
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *keyFile, flag.Arg(0), *verbose); err != nil {
		slog.Error("luksopen", "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, keyFile, device string, verbose bool) error {
	key, err := os.ReadFile(keyFile)
	if err != nil {
		return err
	}
	f, err := os.Open(device)
	if err != nil {
		return err
	}
	defer f.Close()
	v, err := crypt.Open(ctx, f, key)
	if err != nil {
		return fmt.Errorf("%s: %w", device, err)
	}
	defer v.Zero()
	if verbose {
		slog.Info("unlocked", "device", device, "keyslot", v.Keyslot, "uuid", v.UUID,
			"sector_size", v.SectorSize, "offset_sectors", v.OffsetSectors(), "sectors", v.Sectors())
	}
	return nil
}
