//go:build !linux

// Command heartbeat-echo is Linux only (vsock).
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "heartbeat-echo: Linux only (vsock)")
	os.Exit(1)
}
