package crypt_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"

	"github.com/enclave-storage/enclave-storage/crypt"
	"github.com/enclave-storage/enclave-storage/keys"
)

// The enclave's first-launch-or-unlock logic: format a blank run image,
// unlock a formatted one, and hand the dm-crypt table to device-mapper.
func Example() {
	ctx := context.Background()
	key, err := keys.Random{}.Key(ctx, "run")
	if err != nil {
		log.Fatal(err)
	}
	f, err := os.CreateTemp("", "run-*.img")
	if err != nil {
		log.Fatal(err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	if err := f.Truncate(64 << 20); err != nil {
		log.Fatal(err)
	}

	fast := crypt.KDF{Type: crypt.PBKDF2, Iterations: 1000} // keys are random: no stretching needed
	v, err := crypt.Open(ctx, f, key)
	if errors.Is(err, crypt.ErrNotLUKS) {
		v, err = crypt.Format(ctx, f, key, &crypt.FormatOptions{KDF: fast})
	}
	if err != nil {
		log.Fatal(err)
	}
	defer v.Zero()
	fmt.Println(v.Cipher, v.SectorSize, v.OffsetSectors(), v.Sectors())
	// v.Table("/dev/nbd1") is the line to load with DM_TABLE_LOAD.

	// Output: aes-xts-plain64 4096 32768 98304
}
