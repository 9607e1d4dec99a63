//go:build linux

package nbd

import (
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
	f, err := OpenFile(t.TempDir()+"/run.img", FileOptions{Size: 4 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	srv, err := NewServer([]*Export{{Name: "run", Backend: f}}, Options{})
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
	exerciseFileExport(t, c)
}
