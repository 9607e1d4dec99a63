//go:build linux

package nbd

import (
	"context"
	"errors"
	"net"
	"slices"
	"testing"

	"github.com/enclave-storage/enclave-storage/nbd/nbdtest"
	"github.com/enclave-storage/enclave-storage/nbdclient"
	"github.com/mdlayher/vsock"
)

// serveVsock serves exports on vsock port and returns a function dialing
// it through the local loopback (CID 1, the vsock_loopback transport). It
// runs in the integration microVM; hosts without vsock loopback skip.
func serveVsock(t *testing.T, port uint32, exports []*Export) func() net.Conn {
	t.Helper()
	l, err := vsock.Listen(port, nil)
	if err != nil {
		t.Skipf("vsock unavailable here (no AF_VSOCK or vsock_loopback; runs in the integration VM): listen: %v", err)
	}
	srv, err := NewServer(exports, Options{})
	if err != nil {
		l.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, l) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return func() net.Conn {
		t.Helper()
		conn, err := vsock.Dial(vsock.Local, port, nil)
		if err != nil {
			t.Skipf("vsock unavailable here (cannot dial the local CID; needs vsock_loopback, runs in the integration VM): %v", err)
		}
		t.Cleanup(func() { conn.Close() })
		return conn
	}
}

// TestVsock serves a file over AF_VSOCK and exercises it through the
// loopback.
func TestVsock(t *testing.T) {
	f, err := OpenFile(t.TempDir()+"/run.img", FileOptions{Size: 4 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dial := serveVsock(t, 10809, []*Export{{Name: "run", Backend: f}})
	c, err := nbdtest.Handshake(testCtx(t), dial(), "run")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	exerciseFileExport(t, c)
}

// TestVsockPeerCID checks the CID binding over real vsock, where the
// kernel sets the peer's address: the loopback peer (CID 1) is served an
// export bound to CID 1, and refused, as if it did not exist, one bound
// to CID 7.
func TestVsockPeerCID(t *testing.T) {
	f, err := OpenFile(t.TempDir()+"/run.img", FileOptions{Size: 4 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dial := serveVsock(t, 10810, []*Export{
		{Name: "mine", Backend: f, PeerCIDs: []uint32{vsock.Local}},
		{Name: "other", Backend: &memBackend{data: make([]byte, 1<<20)}, PeerCIDs: []uint32{7}},
		{Name: "open", Backend: &memBackend{data: make([]byte, 1<<20)}},
	})
	// The client's own address says CID_ANY (getsockname of an unbound
	// socket); the server sees the loopback's CID 1 as the peer.
	names, err := nbdtest.List(testCtx(t), dial())
	if want := []string{"mine", "open"}; err != nil || !slices.Equal(names, want) {
		t.Errorf("NBD_OPT_LIST as CID 1: %q, %v; want %q", names, err, want)
	}
	if _, err := nbdtest.Handshake(testCtx(t), dial(), "other"); !errors.Is(err, nbdclient.ErrUnknownExport) {
		t.Errorf("export bound to CID 7, asked by CID 1: %v, want the reply to an unknown export", err)
	}
	c, err := nbdtest.Handshake(testCtx(t), dial(), "mine")
	if err != nil {
		t.Fatalf("export bound to CID 1, asked by CID 1: %v", err)
	}
	defer c.Close()
	exerciseFileExport(t, c)
}
