//go:build linux

package vsockproxy

import (
	"bytes"
	"context"
	"testing"

	"github.com/mdlayher/vsock"
)

// TestVsockForward forwards a real AF_VSOCK connection, half-close
// included, through the local loopback (CID 1). It runs in the
// integration microVM; hosts without vsock loopback skip it.
func TestVsockForward(t *testing.T) {
	const port = 18000
	l, err := vsock.Listen(port, nil)
	if err != nil {
		t.Skipf("vsock unavailable here (no AF_VSOCK or vsock_loopback; runs in the integration VM): listen: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- (&Proxy{Target: hashServer(t)}).Serve(ctx, l) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()
	c, err := vsock.Dial(vsock.Local, port, nil)
	if err != nil {
		t.Skipf("vsock unavailable here (cannot dial the local CID; needs vsock_loopback, runs in the integration VM): %v", err)
	}
	defer c.Close()
	checkHashed(t, c, bytes.Repeat([]byte("enclave"), 50000))
}
