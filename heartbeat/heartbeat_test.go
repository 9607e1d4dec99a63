package heartbeat

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// listen returns a listener on network ("tcp" or "unix") and a dialer for it.
func listen(t *testing.T, network string) (net.Listener, Dialer) {
	t.Helper()
	addr := "127.0.0.1:0"
	if network == "unix" {
		addr = filepath.Join(t.TempDir(), "hb.sock")
	}
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	if u, ok := ln.(*net.UnixListener); ok {
		u.SetUnlinkOnClose(false) // a closed socket file refuses, as a closed vsock port does
	}
	t.Cleanup(func() { ln.Close() })
	return ln, func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, ln.Addr().String())
	}
}

func TestSend(t *testing.T) {
	// Each fake parent handles one accepted connection.
	tests := []struct {
		name   string
		parent func(net.Conn) // nil: nothing listens (refused)
		want   error
	}{
		{"echo", func(c net.Conn) { Echo(context.Background(), c) }, nil},
		{"no echo, connection held open", func(c net.Conn) {
			var b [1]byte
			c.Read(b[:])
			time.Sleep(time.Second) // longer than Send's timeout below
			c.Close()
		}, ErrNoEcho},
		{"no echo, connection closed", func(c net.Conn) {
			var b [1]byte
			c.Read(b[:])
			c.Close()
		}, ErrNoEcho},
		{"wrong byte", func(c net.Conn) {
			var b [1]byte
			c.Read(b[:])
			c.Write([]byte{0xB8})
			c.Close()
		}, ErrWrongEcho},
		{"refused", nil, syscall.ECONNREFUSED},
	}
	for _, network := range []string{"tcp", "unix"} {
		for _, tt := range tests {
			t.Run(network+"/"+tt.name, func(t *testing.T) {
				ln, dial := listen(t, network)
				got := make(chan byte, 1)
				if tt.parent == nil {
					ln.Close()
				} else {
					go func() {
						c, err := ln.Accept()
						if err != nil {
							return
						}
						tt.parent(&recorder{Conn: c, got: got})
					}()
				}
				err := Send(context.Background(), dial, 200*time.Millisecond)
				if tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) {
					t.Fatalf("Send = %v, want %v", err, tt.want)
				}
				if tt.parent != nil {
					if b := <-got; b != Byte {
						t.Fatalf("the parent received %#02x, want %#02x", b, Byte)
					}
				}
			})
		}
	}
}

// recorder passes the first byte the parent reads to got.
type recorder struct {
	net.Conn
	got  chan byte
	seen bool
}

func (r *recorder) Read(p []byte) (int, error) {
	n, err := r.Conn.Read(p)
	if n > 0 && !r.seen {
		r.seen = true
		r.got <- p[0]
	}
	return n, err
}

func TestSendCancelled(t *testing.T) {
	_, dial := listen(t, "tcp") // accepts (backlog) but never answers
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Send(ctx, dial, time.Minute); err == nil {
		t.Fatal("Send with a cancelled context succeeded")
	}
}

func TestEcho(t *testing.T) {
	for _, tt := range []struct {
		name string
		send []byte
		want error
	}{
		{"heartbeat", []byte{Byte}, nil},
		{"wrong byte", []byte{0x00}, ErrWrongEcho},
	} {
		t.Run(tt.name, func(t *testing.T) {
			a, b := net.Pipe()
			done := make(chan error, 1)
			go func() { done <- Echo(context.Background(), b) }()
			a.Write(tt.send)
			var got [1]byte
			_, rerr := a.Read(got[:])
			a.Close()
			err := <-done
			if tt.want == nil && (err != nil || rerr != nil || got[0] != Byte) {
				t.Fatalf("Echo = %v, echoed %#02x (%v)", err, got[0], rerr)
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("Echo = %v, want %v", err, tt.want)
			}
		})
	}
}
