package vsockproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// DefaultMaxConns bounds concurrent forwarded connections when
// Proxy.MaxConns is zero.
const DefaultMaxConns = 64

// DefaultDialTimeout bounds connecting to the target when the context has
// no earlier deadline.
const DefaultDialTimeout = 10 * time.Second

// Proxy forwards every connection accepted on a listener to Target.
type Proxy struct {
	// Target is the one destination, HOST:PORT (checked by ParseTarget).
	Target string
	// Dial connects to Target (default: a net.Dialer, DefaultDialTimeout).
	Dial func(ctx context.Context, network, address string) (net.Conn, error)
	// MaxConns bounds concurrent connections (default DefaultMaxConns).
	MaxConns int
	// Logger receives one line per connection (default: discard).
	Logger *slog.Logger
	// Metrics, if set, counts connections and bytes.
	Metrics *Metrics
}

// ParseTarget checks a HOST:PORT destination: a host name or address and a
// port from 1 to 65535.
func ParseTarget(s string) (host string, port uint16, err error) {
	h, p, err := net.SplitHostPort(s)
	n, perr := strconv.ParseUint(p, 10, 16)
	if err != nil || perr != nil || h == "" || n == 0 {
		return "", 0, fmt.Errorf("vsockproxy: target %q: want HOST:PORT with a port from 1 to 65535", s)
	}
	return h, uint16(n), nil
}

// Serve forwards connections from l until ctx is done, then closes l,
// closes the connections in flight and returns nil once they are gone; it
// returns an error if l fails.
func (p *Proxy) Serve(ctx context.Context, l net.Listener) error {
	if _, _, err := ParseTarget(p.Target); err != nil {
		return err
	}
	log := p.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("target", p.Target, "listener", l.Addr().String())
	max := p.MaxConns
	if max <= 0 {
		max = DefaultMaxConns
	}
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(ctx, func() { l.Close() })
	defer stop()

	// On return, whatever the cause (ctx done or Accept failing), first
	// cancel so the open connections close, then wait for them: waiting
	// first would hold Serve until every client hung up on its own.
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()
	slots := make(chan struct{}, max)
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("vsockproxy: accept: %w", err)
		}
		select {
		case slots <- struct{}{}:
		default:
			log.Warn("connection refused: too many connections", "remote", c.RemoteAddr().String(), "max", max)
			p.Metrics.count("rejected")
			c.Close()
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			p.forward(ctx, c, log)
		}()
	}
}

// forward pumps one connection to the target and back.
func (p *Proxy) forward(ctx context.Context, c net.Conn, log *slog.Logger) {
	defer c.Close()
	start := time.Now()
	log = log.With("remote", c.RemoteAddr().String())
	dial := p.Dial
	if dial == nil {
		d := &net.Dialer{Timeout: DefaultDialTimeout}
		dial = d.DialContext
	}
	t, err := dial(ctx, "tcp", p.Target)
	if err != nil {
		log.Error("cannot reach target", "err", err)
		p.Metrics.count("dial_failed")
		return
	}
	defer t.Close()
	p.Metrics.count("forwarded")
	p.Metrics.active(1)
	defer p.Metrics.active(-1)

	// Closing both ends stops both pumps when ctx is done.
	stop := context.AfterFunc(ctx, func() { c.Close(); t.Close() })
	defer stop()
	var up, down int64
	var upErr, downErr error
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		up, upErr = pump(t, c, p.Metrics.bytes("to_target"))
	}()
	down, downErr = pump(c, t, p.Metrics.bytes("from_target"))
	wg.Wait()
	err = errors.Join(upErr, downErr)
	log.Info("connection closed", "bytes_to_target", up, "bytes_from_target", down,
		"duration", time.Since(start).Round(time.Millisecond), "err", err)
}

// halfCloser is a connection whose write half closes alone (TCP, unix,
// vsock).
type halfCloser interface{ CloseWrite() error }

// pump copies src to dst until src ends, then closes dst's write half (or
// all of dst if it cannot half-close) so the peer sees the end.
func pump(dst, src net.Conn, counter prometheus.Counter) (int64, error) {
	w := io.Writer(dst)
	if counter != nil {
		w = countingWriter{dst, counter}
	}
	n, err := io.Copy(w, src)
	if err != nil {
		// A reset or failed write: nothing more can flow either way.
		src.Close()
		dst.Close()
	} else if hc, ok := dst.(halfCloser); ok {
		hc.CloseWrite()
	} else {
		dst.Close()
	}
	if errors.Is(err, net.ErrClosed) {
		err = nil // the other direction or shutdown closed it
	}
	return n, err
}

type countingWriter struct {
	w io.Writer
	c prometheus.Counter
}

func (cw countingWriter) Write(b []byte) (int, error) {
	n, err := cw.w.Write(b)
	cw.c.Add(float64(n))
	return n, err
}
