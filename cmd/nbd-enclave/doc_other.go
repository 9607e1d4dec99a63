//go:build !linux

// Command nbd-enclave is the enclave's mount agent; it only runs on Linux.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "nbd-enclave: Linux only (it drives the kernel NBD client, device-mapper and overlayfs)")
	os.Exit(1)
}
