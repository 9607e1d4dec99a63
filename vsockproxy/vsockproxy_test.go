package vsockproxy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/enclave-storage/enclave-storage/internal/syncbuf"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// hashServer is a TCP target that reads until the client half-closes,
// answers with the SHA-256 of what it read, and closes: it works only if
// the proxy forwards the half-close.
func hashServer(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				h := sha256.New()
				io.Copy(h, c)
				c.Write(h.Sum(nil))
			}()
		}
	}()
	return l.Addr().String()
}

// serveUnix runs p on a unix listener; stop cancels it and returns what
// Serve returned.
func serveUnix(t *testing.T, p *Proxy) (path string, stop func() error) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "fwd.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Serve(ctx, l) }()
	return path, func() error {
		cancel()
		return <-done
	}
}

// start runs p on a unix listener until the test ends and returns the
// socket path.
func start(t *testing.T, p *Proxy) string {
	t.Helper()
	path, stop := serveUnix(t, p)
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return path
}

// checkHashed sends payload through c to hashServer, half-closes and
// checks the answer.
func checkHashed(t *testing.T, c interface {
	net.Conn
	CloseWrite() error
}, payload []byte) {
	t.Helper()
	go func() {
		c.Write(payload)
		c.CloseWrite()
	}()
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if want := sha256.Sum256(payload); !bytes.Equal(got, want[:]) {
		t.Errorf("%d bytes: answer %x, want %x", len(payload), got, want)
	}
}

func dial(t *testing.T, path string) *net.UnixConn {
	t.Helper()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.UnixConn)
}

func TestForwardHalfClose(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	var logs syncbuf.Buffer
	p := &Proxy{Target: hashServer(t), Metrics: m, Logger: slog.New(slog.NewTextHandler(&logs, nil))}
	path := start(t, p)
	for _, size := range []int{0, 1, 100 << 10} {
		payload := bytes.Repeat([]byte("kms"), size)[:size]
		checkHashed(t, dial(t, path), payload)
	}
	if n := testutil.ToFloat64(m.conns.WithLabelValues("forwarded")); n != 3 {
		t.Errorf("forwarded connections = %v, want 3", n)
	}
	// The counters are updated before the pumps return; the answer is
	// read only after the target sent it.
	if n := testutil.ToFloat64(m.bytesV.WithLabelValues("from_target")); n != 3*sha256.Size {
		t.Errorf("bytes from target = %v, want %d", n, 3*sha256.Size)
	}
}

// holdServer accepts connections and keeps them open until the test ends.
func holdServer(t *testing.T) (addr string, accepted chan net.Conn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted = make(chan net.Conn, 16)
	t.Cleanup(func() {
		l.Close()
		close(accepted)
		for c := range accepted {
			c.Close()
		}
	})
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	return l.Addr().String(), accepted
}

func TestMaxConns(t *testing.T) {
	target, accepted := holdServer(t)
	reg := prometheus.NewRegistry()
	m, _ := NewMetrics(reg)
	path := start(t, &Proxy{Target: target, MaxConns: 1, Metrics: m})

	first := dial(t, path)
	held := <-accepted // the first connection reached the target and stays open
	defer held.Close()
	second := dial(t, path)
	if n, err := second.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("second connection over MaxConns: read %d, %v; want EOF", n, err)
	}
	if n := testutil.ToFloat64(m.conns.WithLabelValues("rejected")); n != 1 {
		t.Errorf("rejected = %v, want 1", n)
	}
	// The first still forwards.
	first.Write([]byte("ping"))
	buf := make([]byte, 4)
	if _, err := io.ReadFull(held, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("first connection: target read %q, %v", buf, err)
	}
}

func TestTargetUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	target := l.Addr().String()
	l.Close() // nothing listens there now
	m, _ := NewMetrics(prometheus.NewRegistry())
	var logs syncbuf.Buffer
	path := start(t, &Proxy{Target: target, Metrics: m, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	c := dial(t, path)
	if n, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("read %d, %v; want EOF", n, err)
	}
	if n := testutil.ToFloat64(m.conns.WithLabelValues("dial_failed")); n != 1 {
		t.Errorf("dial_failed = %v, want 1", n)
	}
	if !strings.Contains(logs.String(), "cannot reach target") {
		t.Errorf("log lacks the dial failure:\n%s", logs.String())
	}
}

func TestDialsOnlyTarget(t *testing.T) {
	target, accepted := holdServer(t)
	dialled := make(chan string, 4)
	p := &Proxy{Target: target, Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
		dialled <- network + " " + addr
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}}
	path := start(t, p)
	c := dial(t, path)
	c.Write([]byte("CONNECT other.example:443 HTTP/1.1\r\n\r\n")) // the enclave cannot pick a host
	(<-accepted).Close()
	if got := <-dialled; got != "tcp "+target {
		t.Errorf("dialled %q, want tcp %s", got, target)
	}
}

func TestShutdownClosesConnections(t *testing.T) {
	target, accepted := holdServer(t)
	path, stop := serveUnix(t, &Proxy{Target: target})
	c := dial(t, path)
	<-accepted
	if err := stop(); err != nil {
		t.Fatalf("Serve after cancel: %v", err)
	}
	if n, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("client after shutdown: read %d, %v; want EOF", n, err)
	}
}

func TestParseTarget(t *testing.T) {
	tests := []struct {
		in   string
		host string
		port uint16
		ok   bool
	}{
		{"kms.us-east-1.amazonaws.com:443", "kms.us-east-1.amazonaws.com", 443, true},
		{"127.0.0.1:8443", "127.0.0.1", 8443, true},
		{"[::1]:443", "::1", 443, true},
		{"kms.us-east-1.amazonaws.com", "", 0, false},
		{":443", "", 0, false},
		{"host:0", "", 0, false},
		{"host:65536", "", 0, false},
		{"host:https", "", 0, false},
	}
	for _, tt := range tests {
		h, p, err := ParseTarget(tt.in)
		if (err == nil) != tt.ok || h != tt.host || p != tt.port {
			t.Errorf("ParseTarget(%q) = %q, %d, %v; want %q, %d, ok=%v", tt.in, h, p, err, tt.host, tt.port, tt.ok)
		}
	}
	if err := (&Proxy{Target: "nohost"}).Serve(context.Background(), nil); err == nil {
		t.Error("Serve with a bad target succeeded")
	}
}

// failingListener hands out its first connection, then, once fail is
// closed, fails every Accept with err, as a listener whose socket broke.
type failingListener struct {
	net.Listener
	err  error
	fail chan struct{}
	once sync.Once
}

func (l *failingListener) Accept() (net.Conn, error) {
	first := false
	l.once.Do(func() { first = true })
	if first {
		return l.Listener.Accept()
	}
	<-l.fail
	return nil, l.err
}

// TestAcceptFailureClosesConnections: when Accept fails, Serve returns the
// error and closes the open connections instead of waiting for the
// clients to hang up (which this one never does).
func TestAcceptFailureClosesConnections(t *testing.T) {
	target, accepted := holdServer(t)
	path := filepath.Join(t.TempDir(), "fwd.sock")
	ul, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ul.Close()
	broken := errors.New("listener broke")
	fl := &failingListener{Listener: ul, err: broken, fail: make(chan struct{})}
	done := make(chan error, 1)
	go func() { done <- (&Proxy{Target: target}).Serve(context.Background(), fl) }()
	c := dial(t, path)
	<-accepted // the connection is forwarded and held open by both ends
	close(fl.fail)
	select {
	case err := <-done:
		if !errors.Is(err, broken) {
			t.Fatalf("Serve = %v, want %v", err, broken)
		}
	case <-time.After(time.Minute): // liveness bound, not a timing assertion
		t.Fatal("Serve still waiting for the open connection after Accept failed")
	}
	if n, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("client after Serve returned: read %d, %v; want EOF", n, err)
	}
}
