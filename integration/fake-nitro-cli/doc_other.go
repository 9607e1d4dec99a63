//go:build !linux

// Command fake-nitro-cli is Linux only (namespaces, vsock).
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "fake-nitro-cli: Linux only (namespaces, vsock)")
	os.Exit(1)
}
