package control

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mdlayher/vsock"
)

// serve starts a server with allow on a unix socket and returns it and a
// dialer.
func serve(t *testing.T, allow func(net.Conn) error) (*Server, func() net.Conn) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "control.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	s := NewServer(allow, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, l) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		s.Close(context.Background())
	})
	return s, func() net.Conn {
		c, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// expect reads the next events and compares their names (and statuses).
func expect(t *testing.T, c *Client, want ...Event) {
	t.Helper()
	for _, w := range want {
		got, err := c.Next(ctxT(t))
		if err != nil {
			t.Fatalf("waiting for %q: %v", w.Event, err)
		}
		if !sameEvent(got, w) {
			t.Fatalf("got %+v, want %+v", got, w)
		}
	}
}

func expectEOF(t *testing.T, c *Client) {
	t.Helper()
	if ev, err := c.Next(ctxT(t)); !errors.Is(err, io.EOF) {
		t.Fatalf("got %+v, %v; want io.EOF", ev, err)
	}
}

func TestLifecycle(t *testing.T) {
	for _, tc := range []struct {
		name   string
		grace  time.Duration
		want   time.Duration
		wantOK bool
	}{
		{"enclave's grace", 0, 0, false},
		{"parent's grace", 2500 * time.Millisecond, 2500 * time.Millisecond, true},
		{"sub-millisecond rounds down", 1500 * time.Microsecond, time.Millisecond, true},
		{"capped", 48 * time.Hour, MaxGrace, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, dial := serve(t, nil)
			c := NewClient(dial())
			expect(t, c, Event{Event: EventHello, Version: Version})
			if err := c.Stop(ctxT(t), tc.grace); err != nil {
				t.Fatal(err)
			}
			var req Request
			select {
			case req = <-s.Stops():
			case <-ctxT(t).Done():
				t.Fatal("no stop request")
			}
			if g, ok := req.Grace(); g != tc.want || ok != tc.wantOK {
				t.Errorf("grace %v %v, want %v %v", g, ok, tc.want, tc.wantOK)
			}
			expect(t, c, Event{Event: EventStopping})
			s.Publish(Event{Event: EventAppExited, Status: Status(143)})
			s.Publish(Event{Event: EventDown, Status: Status(0), Clean: true})
			expect(t, c, Event{Event: EventAppExited, Status: Status(143)}, Event{Event: EventDown, Status: Status(0), Clean: true})
			if err := s.Close(ctxT(t)); err != nil {
				t.Fatal(err)
			}
			expectEOF(t, c)
		})
	}
}

func TestStopOnce(t *testing.T) {
	s, dial := serve(t, nil)
	a, b := NewClient(dial()), NewClient(dial())
	expect(t, a, Event{Event: EventHello, Version: Version})
	expect(t, b, Event{Event: EventHello, Version: Version})
	for _, c := range []*Client{a, b, a} {
		if err := c.Stop(ctxT(t), time.Second); err != nil {
			t.Fatal(err)
		}
	}
	<-s.Stops()
	// Both clients hear one stopping, then the next event.
	s.Publish(Event{Event: EventAppExited, Status: Status(0)})
	for _, c := range []*Client{a, b} {
		expect(t, c, Event{Event: EventStopping}, Event{Event: EventAppExited, Status: Status(0)})
	}
	select {
	case r := <-s.Stops():
		t.Fatalf("second stop delivered: %+v", r)
	default:
	}
}

func TestLateClientReplay(t *testing.T) {
	s, dial := serve(t, nil)
	s.Publish(Event{Event: EventStopping})
	s.Publish(Event{Event: EventAppExited, Status: Status(3)})
	c := NewClient(dial())
	expect(t, c, Event{Event: EventHello, Version: Version}, Event{Event: EventStopping}, Event{Event: EventAppExited, Status: Status(3)})
}

func TestBadRequests(t *testing.T) {
	for _, tc := range []struct {
		name, send, errText string
	}{
		{"oversized line", strings.Repeat("x", 2*MaxLine) + "\n", "longer than 4096"},
		{"oversized stop", `{"op":"stop","grace_ms":1` + strings.Repeat(" ", MaxLine) + "}\n", "longer than 4096"},
		{"garbage", "\x00\x01\x02 not json\n", "malformed"},
		{"unknown op", `{"op":"exec","args":["/bin/sh"]}` + "\n", "malformed"},
		{"negative grace", `{"op":"stop","grace_ms":-1}` + "\n", "out of range"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, dial := serve(t, nil)
			conn := dial()
			c := NewClient(conn)
			expect(t, c, Event{Event: EventHello, Version: Version})
			go conn.Write([]byte(tc.send)) // may fail once the server closes
			ev, err := c.Next(ctxT(t))
			if err != nil || ev.Event != EventError || !strings.Contains(ev.Error, tc.errText) {
				t.Fatalf("got %+v, %v; want an error event about %q", ev, err, tc.errText)
			}
			// Then the end: EOF, or a reset when the unread rest of an
			// oversized line was still in the server's buffer.
			if ev, err := c.Next(ctxT(t)); err == nil || (!errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET)) {
				t.Fatalf("after the error: %+v, %v; want the connection closed", ev, err)
			}
			select {
			case r := <-s.Stops():
				t.Fatalf("stop delivered: %+v", r)
			default:
			}
		})
	}
}

func TestPeerRefused(t *testing.T) {
	refused := make(chan net.Addr, 1)
	s, dial := serve(t, func(c net.Conn) error {
		refused <- c.RemoteAddr()
		return ErrPeerRefused
	})
	conn := dial()
	<-refused
	conn.Write([]byte(`{"op":"stop"}` + "\n")) // fails or goes nowhere
	b, err := io.ReadAll(bufio.NewReader(conn))
	if len(b) != 0 || (err != nil && !errors.Is(err, syscall.ECONNRESET)) {
		t.Fatalf("refused peer read %q, %v; want nothing and the connection closed", b, err)
	}
	select {
	case r := <-s.Stops():
		t.Fatalf("refused peer's stop delivered: %+v", r)
	default:
	}
}

// addrConn is a net.Conn with a chosen remote address.
type addrConn struct {
	net.Conn
	remote net.Addr
}

func (c addrConn) RemoteAddr() net.Addr { return c.remote }

func TestPeerCID(t *testing.T) {
	allow := PeerCID(3)
	for _, tc := range []struct {
		remote net.Addr
		ok     bool
	}{
		{&vsock.Addr{ContextID: 3, Port: 1234}, true},
		{&vsock.Addr{ContextID: 16, Port: 1234}, false},
		{&vsock.Addr{ContextID: 1, Port: 1234}, false},
		{&net.UnixAddr{Name: "/x", Net: "unix"}, false},
		{&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 3}, false},
	} {
		err := allow(addrConn{remote: tc.remote})
		if (err == nil) != tc.ok || (err != nil && !errors.Is(err, ErrPeerRefused)) {
			t.Errorf("%v: %v, want ok=%v", tc.remote, err, tc.ok)
		}
	}
}

// TestSlowClientDropped: a client that never reads cannot block Publish.
func TestSlowClientDropped(t *testing.T) {
	a, b := net.Pipe() // unbuffered: writes block until read
	defer b.Close()
	s := NewServer(nil, nil)
	s.admit(a)
	for i := 0; i < 4*queueLen; i++ {
		s.Publish(Event{Event: EventAppExited, Status: Status(i)})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	s.Close(ctx) // the blocked write ends when its connection is closed
}

func TestClientContext(t *testing.T) {
	_, dial := serve(t, nil)
	c := NewClient(dial())
	expect(t, c, Event{Event: EventHello, Version: Version})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.Next(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Next with a cancelled context: %v", err)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if _, err := c.Next(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Next past its deadline: %v", err)
	}
}

// TestMaxClients: connections past MaxClients are closed without a hello;
// one freed slot is usable again.
func TestMaxClients(t *testing.T) {
	_, dial := serve(t, nil)
	var cs []*Client
	for i := 0; i < MaxClients; i++ {
		c := NewClient(dial())
		expect(t, c, Event{Event: EventHello, Version: Version})
		cs = append(cs, c)
	}
	expectEOF(t, NewClient(dial()))
	cs[0].Close()
	ctx := ctxT(t)
	for {
		// The server notices the close asynchronously.
		c := NewClient(dial())
		if ev, err := c.Next(ctx); err == nil && ev.Event == EventHello {
			break
		}
		if ctx.Err() != nil {
			t.Fatal("no slot freed")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
