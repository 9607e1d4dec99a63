//go:build integration && linux

package nbd

import (
	"os"
	"testing"

	"github.com/enclave-storage/enclave-storage/integration/itest"
)

// TestIntegrationVsock makes the vsock tests mandatory inside the
// integration microVM, where vsock_loopback is loaded: there a missing
// transport is a failure, not a skip. Everything else in this package runs
// in the VM too (tests needing nbdinfo or nbdcopy skip there; they run on
// the host).
func TestIntegrationVsock(t *testing.T) {
	_, err := os.Stat("/sys/module/vsock_loopback")
	itest.Need(t, "vsock_loopback module", err)
	t.Run("serve", TestVsock)
	t.Run("peer CID", TestVsockPeerCID)
}
