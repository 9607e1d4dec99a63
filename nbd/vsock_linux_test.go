//go:build linux

package nbd

import (
	"bytes"
	"context"
	"testing"

	"github.com/enclave-storage/enclave-storage/nbd/nbdtest"
	"github.com/mdlayher/vsock"
)

// TestVsock serves over AF_VSOCK and connects through the local loopback
// (CID 1, the vsock_loopback transport). It runs in the integration
// microVM; hosts without vsock loopback skip it.
func TestVsock(t *testing.T) {
	const port = 10809
	l, err := vsock.Listen(port, nil)
	if err != nil {
		t.Skipf("vsock unavailable here (no AF_VSOCK or vsock_loopback; runs in the integration VM): listen: %v", err)
	}
	mem := &memBackend{data: randomBytes(t, 1<<20)}
	srv, err := NewServer([]*Export{{Name: "run", Backend: mem}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, l) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()
	conn, err := vsock.Dial(vsock.Local, port, nil)
	if err != nil {
		t.Skipf("vsock unavailable here (cannot dial the local CID; needs vsock_loopback, runs in the integration VM): %v", err)
	}
	c, err := nbdtest.Handshake(testCtx(t), conn, "run")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	data := randomBytes(t, 128<<10)
	if err := c.WriteAt(testCtx(t), data, 4096, nbdtest.FlagFUA); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(data))
	if err := c.ReadAt(testCtx(t), got, 4096); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read back over vsock: %v", err)
	}
}
