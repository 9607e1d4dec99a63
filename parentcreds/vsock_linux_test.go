//go:build linux

package parentcreds

import (
	"context"
	"net"
	"testing"

	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/mdlayher/vsock"
)

// TestVsock serves credentials over AF_VSOCK through the local loopback
// (CID 1). It runs in the integration microVM; hosts without vsock
// loopback skip it.
func TestVsock(t *testing.T) {
	const port = 18001
	l, err := vsock.Listen(port, nil)
	if err != nil {
		t.Skipf("vsock unavailable here (no AF_VSOCK or vsock_loopback; runs in the integration VM): listen: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Serve(ctx, l, credentials.NewStaticCredentialsProvider("AKIDVSOCK", "s", "t"), "ap-south-1")
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()
	var dialErr error
	p := &Provider{Dial: func(ctx context.Context) (net.Conn, error) {
		c, err := vsock.Dial(vsock.Local, port, nil)
		dialErr = err
		return c, err
	}}
	r, err := p.Fetch(ctx)
	if dialErr != nil {
		t.Skipf("vsock unavailable here (cannot dial the local CID; needs vsock_loopback, runs in the integration VM): %v", dialErr)
	}
	if err != nil {
		t.Fatal(err)
	}
	if r.AccessKeyId != "AKIDVSOCK" || r.Token != "t" || r.Region != "ap-south-1" {
		t.Fatalf("over vsock: %+v", r)
	}
}
