//go:build linux

package nbd

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// waitingPair returns the two ends of a unix stream connection whose
// first end has been switched by waitingSends (which vsock connections
// get; the mechanics are the socket layer's, so a unix socket, which the
// host can make, shows them), with small buffers so a send fills them
// quickly, and the reader the switched end must be read through.
func waitingPair(t *testing.T) (c *net.UnixConn, r io.Reader, peer *net.UnixConn) {
	t.Helper()
	l, err := net.Listen("unix", filepath.Join(t.TempDir(), "s"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	pc, err := net.Dial("unix", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	sc, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	c, peer = sc.(*net.UnixConn), pc.(*net.UnixConn)
	t.Cleanup(func() { peer.Close(); c.Close() }) // the peer first: that ends any send or read still asleep
	c.SetWriteBuffer(64 << 10)
	peer.SetReadBuffer(64 << 10)
	raw, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	if r = waitingSends(raw); r == nil {
		t.Fatal("waitingSends could not switch a unix socket")
	}
	return c, r, peer
}

// TestWaitingSendsMode checks the switch itself: the file is in blocking
// mode, so sends wait in the kernel, for at most vsockSendWait each.
func TestWaitingSendsMode(t *testing.T) {
	c, _, _ := waitingPair(t)
	raw, _ := c.SyscallConn()
	var (
		flags int
		tv    *unix.Timeval
		err   error
	)
	raw.Control(func(fd uintptr) {
		if flags, err = unix.FcntlInt(fd, unix.F_GETFL, 0); err != nil {
			return
		}
		tv, err = unix.GetsockoptTimeval(int(fd), unix.SOL_SOCKET, unix.SO_SNDTIMEO)
	})
	if err != nil {
		t.Fatal(err)
	}
	if flags&unix.O_NONBLOCK != 0 {
		t.Error("the socket is still non-blocking: its sends would not wait in the kernel")
	}
	if got := time.Duration(tv.Nano()); got != vsockSendWait {
		t.Errorf("SO_SNDTIMEO = %v, want %v", got, vsockSendWait)
	}
}

// TestWaitingSendsData sends more than the buffers hold both ways through
// a switched socket, the peer reading slowly, and checks every byte
// arrives in order; then the peer's close reads as io.EOF.
func TestWaitingSendsData(t *testing.T) {
	for _, tt := range []struct {
		name  string
		write func(c *net.UnixConn, p []byte) error
	}{
		{"Write", func(c *net.UnixConn, p []byte) error { _, err := c.Write(p); return err }},
		{"writevRaw", func(c *net.UnixConn, p []byte) error {
			raw, _ := c.SyscallConn()
			return writevRaw(raw, [][]byte{p[:16], p[16 : 1<<20], p[1<<20:]})
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, r, peer := waitingPair(t)
			want := make([]byte, 4<<20)
			rand.Read(want)
			errc := make(chan error, 1)
			go func() { errc <- tt.write(c, want) }()
			got := make([]byte, 0, len(want))
			buf := make([]byte, 40<<10)
			for len(got) < len(want) {
				n, err := peer.Read(buf)
				if err != nil {
					t.Fatalf("peer read after %d bytes: %v", len(got), err)
				}
				got = append(got, buf[:n]...)
				time.Sleep(50 * time.Microsecond) // a slow reader: the sender waits for room
			}
			if err := <-errc; err != nil {
				t.Fatalf("send: %v", err)
			}
			if !bytes.Equal(got, want) {
				t.Fatal("the peer received different bytes")
			}

			// And back: the switched end reads through r.
			go func() { _, err := peer.Write(want); peer.CloseWrite(); errc <- err }()
			back, err := io.ReadAll(r)
			if err != nil {
				t.Fatalf("read: %v", err)
			}
			if err := <-errc; err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(back, want) {
				t.Fatalf("read %d bytes back, want the %d sent", len(back), len(want))
			}
		})
	}
}

// TestWaitingSendsEnd checks that a switched socket still ends the way a
// net.Conn does: deadlines and Close end a read waiting for data and a
// send waiting for room (the peer never reads), instead of leaving a
// thread asleep in the kernel and Close waiting for it.
func TestWaitingSendsEnd(t *testing.T) {
	big := make([]byte, 8<<20)
	for _, tt := range []struct {
		name string
		op   func(c *net.UnixConn, r io.Reader) error
		end  func(c *net.UnixConn) // what ends op; nil: a deadline set before it
		want error
	}{
		{"read deadline", func(c *net.UnixConn, r io.Reader) error {
			c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
			_, err := r.Read(make([]byte, 10))
			return err
		}, nil, os.ErrDeadlineExceeded},
		{"read closed", func(_ *net.UnixConn, r io.Reader) error {
			_, err := r.Read(make([]byte, 10))
			return err
		}, func(c *net.UnixConn) { c.Close() }, net.ErrClosed},
		{"write deadline", func(c *net.UnixConn, _ io.Reader) error {
			c.SetWriteDeadline(time.Now().Add(20 * time.Millisecond))
			_, err := c.Write(big)
			return err
		}, nil, os.ErrDeadlineExceeded},
		{"write closed", func(c *net.UnixConn, _ io.Reader) error {
			_, err := c.Write(big)
			return err
		}, func(c *net.UnixConn) { c.Close() }, net.ErrClosed},
		{"writevRaw deadline", func(c *net.UnixConn, _ io.Reader) error {
			c.SetWriteDeadline(time.Now().Add(20 * time.Millisecond))
			raw, _ := c.SyscallConn()
			return writevRaw(raw, [][]byte{big[:16], big[16:]})
		}, nil, os.ErrDeadlineExceeded},
		{"writevRaw closed", func(c *net.UnixConn, _ io.Reader) error {
			raw, _ := c.SyscallConn()
			return writevRaw(raw, [][]byte{big[:16], big[16:]})
		}, func(c *net.UnixConn) { c.Close() }, net.ErrClosed},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, r, _ := waitingPair(t)
			errc := make(chan error, 1)
			go func() { errc <- tt.op(c, r) }()
			closed := make(chan struct{})
			if tt.end != nil {
				time.Sleep(50 * time.Millisecond) // let op start waiting
				go func() { tt.end(c); close(closed) }()
			} else {
				close(closed)
			}
			// A generous bound: it only tells a hang from an end.
			select {
			case err := <-errc:
				if !errors.Is(err, tt.want) {
					t.Errorf("got %v, want %v", err, tt.want)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("still waiting after 10s: a thread is asleep in the kernel")
			}
			select {
			case <-closed:
			case <-time.After(10 * time.Second):
				t.Fatal("Close still waiting after 10s")
			}
		})
	}
}
