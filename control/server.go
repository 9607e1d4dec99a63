package control

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/mdlayher/vsock"
)

// ErrPeerRefused reports a connection from a peer the server does not
// accept (PeerCID).
var ErrPeerRefused = errors.New("control: peer refused")

// Server bounds.
const (
	// queueLen is how many events may wait for a slow client before it
	// is dropped: the enclave never blocks on the parent.
	queueLen = 16
	// writeTimeout bounds one event's write to a client.
	writeTimeout = 10 * time.Second
	// maxErrorText bounds an event's error text so that it fits a line.
	maxErrorText = 1024
	// MaxClients bounds the connections served at once; more are closed
	// on accept (normally the supervisor holds one).
	MaxClients = 8
)

// Server is the enclave's end: it accepts control connections, turns the
// first valid stop request into a value on Stops, and sends published
// events to every connected client. Its methods are safe for concurrent
// use.
type Server struct {
	allow func(net.Conn) error
	log   *slog.Logger
	stops chan Request

	mu        sync.Mutex
	clients   map[*client]struct{}
	listeners map[net.Listener]struct{}
	history   []Event // lifecycle events, replayed to late clients
	stopped   bool
	closed    bool
	writers   sync.WaitGroup
}

// NewServer returns a server that admits a connection only when allow
// returns nil for it (nil allow admits every connection; PeerCID admits
// one vsock CID). log may be nil.
func NewServer(allow func(net.Conn) error, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{allow: allow, log: log, stops: make(chan Request, 1),
		clients: map[*client]struct{}{}, listeners: map[net.Listener]struct{}{}}
}

// PeerCID admits vsock connections from cid only.
func PeerCID(cid uint32) func(net.Conn) error {
	return func(c net.Conn) error {
		a, ok := c.RemoteAddr().(*vsock.Addr)
		if !ok {
			return fmt.Errorf("%w: %s is not a vsock peer", ErrPeerRefused, c.RemoteAddr())
		}
		if a.ContextID != cid {
			return fmt.Errorf("%w: CID %d, only %d may connect", ErrPeerRefused, a.ContextID, cid)
		}
		return nil
	}
}

// Stops delivers the first accepted stop request (later ones are
// ignored: the enclave is already stopping).
func (s *Server) Stops() <-chan Request { return s.stops }

// Serve accepts connections on l until ctx is done or Close is called, and
// closes l. It returns nil then, or the accept error that ended it.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		l.Close()
		return nil
	}
	s.listeners[l] = struct{}{}
	s.mu.Unlock()
	stop := context.AfterFunc(ctx, func() { l.Close() })
	defer stop()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, l)
		s.mu.Unlock()
		l.Close()
	}()
	for {
		conn, err := l.Accept()
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed || ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("control: accept: %w", err)
		}
		if s.allow != nil {
			if err := s.allow(conn); err != nil {
				s.log.Warn("control connection refused", "remote", conn.RemoteAddr(), "err", err)
				conn.Close()
				continue
			}
		}
		s.admit(conn)
	}
}

// client is one admitted connection: a queue drained by a writer
// goroutine, and a reader goroutine for its requests.
type client struct {
	conn   net.Conn
	out    chan []byte
	closed bool // out closed; guarded by Server.mu
}

// admit registers conn, queues hello and the history, and starts its
// goroutines.
func (s *Server) admit(conn net.Conn) {
	c := &client{conn: conn, out: make(chan []byte, queueLen)}
	s.mu.Lock()
	if s.closed || len(s.clients) >= MaxClients {
		full := !s.closed
		s.mu.Unlock()
		if full {
			s.log.Warn("control: too many connections; closing", "remote", conn.RemoteAddr(), "max", MaxClients)
		}
		conn.Close()
		return
	}
	s.clients[c] = struct{}{}
	s.queueLocked(c, Event{Event: EventHello, Version: Version})
	for _, ev := range s.history {
		s.queueLocked(c, ev)
	}
	s.writers.Add(1)
	s.mu.Unlock()
	s.log.Info("control connection", "remote", conn.RemoteAddr())
	go s.write(c)
	go s.read(c)
}

// write sends c's queue until it is closed, then closes the connection.
func (s *Server) write(c *client) {
	defer s.writers.Done()
	defer c.conn.Close()
	for line := range c.out {
		c.conn.SetWriteDeadline(time.Now().Add(writeTimeout))
		if _, err := c.conn.Write(line); err != nil {
			s.log.Warn("control connection lost", "remote", c.conn.RemoteAddr(), "err", err)
			s.drop(c)
			for range c.out {
			}
			return
		}
	}
}

// read handles c's requests until it fails or closes.
func (s *Server) read(c *client) {
	r := NewReader(c.conn)
	for {
		line, err := ReadLine(r)
		if err != nil {
			s.refuse(c, err)
			return
		}
		req, err := ParseRequest(line)
		if err != nil {
			s.refuse(c, err)
			return
		}
		g, set := req.Grace()
		s.mu.Lock()
		first := !s.stopped
		s.stopped = true
		if first {
			s.stops <- req
		}
		s.mu.Unlock()
		if !first {
			// Debug: a parent repeating itself must not flood the log.
			s.log.Debug("control: stop requested again; already stopping", "remote", c.conn.RemoteAddr())
			continue
		}
		s.log.Info("control: stop requested", "remote", c.conn.RemoteAddr(), "grace", g, "grace_given", set)
		s.Publish(Event{Event: EventStopping})
	}
}

// refuse ends c after a read error, telling it why unless it just went
// away.
func (s *Server) refuse(c *client, err error) {
	if errors.Is(err, ErrLineTooLong) || errors.Is(err, ErrBadMessage) {
		s.log.Warn("control: bad request; closing", "remote", c.conn.RemoteAddr(), "err", err)
		s.mu.Lock()
		s.queueLocked(c, Event{Event: EventError, Error: err.Error()})
		s.mu.Unlock()
	}
	s.drop(c)
}

// drop closes c's queue (its writer sends what is queued and closes the
// connection).
func (s *Server) drop(c *client) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dropLocked(c)
}

func (s *Server) dropLocked(c *client) {
	if c.closed {
		return
	}
	c.closed = true
	delete(s.clients, c)
	close(c.out)
}

// queueLocked queues ev for c, dropping c when its queue is full.
func (s *Server) queueLocked(c *client, ev Event) {
	if c.closed {
		return
	}
	if len(ev.Error) > maxErrorText {
		ev.Error = ev.Error[:maxErrorText] + "…"
	}
	line, err := marshalLine(ev)
	if err != nil {
		s.log.Error("control: event not sent", "event", ev.Event, "err", err)
		return
	}
	select {
	case c.out <- line:
	default:
		s.log.Warn("control: client does not read its events; dropping it", "remote", c.conn.RemoteAddr())
		s.dropLocked(c)
		c.conn.Close()
	}
}

// Publish sends ev to every connected client; lifecycle events
// (stopping, app-exited, down) are also kept for clients that connect
// later. It never blocks on a client.
func (s *Server) Publish(ev Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch ev.Event {
	case EventStopping, EventAppExited, EventDown:
		s.history = append(s.history, ev)
	}
	for c := range s.clients {
		s.queueLocked(c, ev)
	}
}

// Close stops accepting, lets every client's writer send what is queued
// (until ctx is done), and closes every connection.
func (s *Server) Close(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	for l := range s.listeners {
		l.Close()
	}
	conns := make([]net.Conn, 0, len(s.clients))
	for c := range s.clients {
		conns = append(conns, c.conn)
		s.dropLocked(c)
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() {
		s.writers.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		for _, c := range conns {
			c.Close()
		}
		<-done
		return fmt.Errorf("control: flushing events: %w", ctx.Err())
	}
}
