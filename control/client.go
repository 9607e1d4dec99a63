package control

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// Client is the parent's end of a control connection.
type Client struct {
	conn net.Conn
	rmu  sync.Mutex
	r    *bufio.Reader
	wmu  sync.Mutex
}

// NewClient wraps a connection to an enclave's control listener (vsock
// CID of the enclave, port DefaultPort).
func NewClient(conn net.Conn) *Client {
	return &Client{conn: conn, r: NewReader(conn)}
}

// Stop asks the enclave to stop its application. grace > 0 asks for that
// grace period between SIGTERM and SIGKILL (the enclave never grants more
// than its own stop_grace); zero or less leaves it to the enclave.
func (c *Client) Stop(ctx context.Context, grace time.Duration) error {
	req := Request{Op: OpStop}
	if grace > 0 {
		ms := grace.Milliseconds()
		if grace > MaxGrace {
			ms = MaxGrace.Milliseconds()
		}
		req.GraceMS = &ms
	}
	line, err := marshalLine(req)
	if err != nil {
		return err
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	defer withDeadline(ctx, c.conn.SetWriteDeadline)()
	if _, err := c.conn.Write(line); err != nil {
		return fmt.Errorf("control: sending stop: %w", ctxErr(ctx, err))
	}
	return nil
}

// Next returns the next event; io.EOF when the enclave closed the
// connection between events.
func (c *Client) Next(ctx context.Context) (Event, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	defer withDeadline(ctx, c.conn.SetReadDeadline)()
	line, err := ReadLine(c.r)
	if errors.Is(err, io.EOF) {
		return Event{}, io.EOF
	}
	if err != nil {
		return Event{}, fmt.Errorf("control: reading event: %w", ctxErr(ctx, err))
	}
	return ParseEvent(line)
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// withDeadline applies ctx's deadline with set, and an immediate one when
// ctx is cancelled; the returned function clears it again.
func withDeadline(ctx context.Context, set func(time.Time) error) func() {
	if d, ok := ctx.Deadline(); ok {
		set(d)
	}
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		set(time.Unix(1, 0))
		close(fired)
	})
	return func() {
		if !stop() {
			<-fired // it ran: clear the deadline after it, not before
		}
		set(time.Time{})
	}
}

// ctxErr prefers the context's error to the timeout it caused.
func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%w (%w)", ctx.Err(), err)
	}
	if d, ok := ctx.Deadline(); ok && !time.Now().Before(d) {
		// The connection's deadline fired before the context's timer.
		return fmt.Errorf("%w (%w)", context.DeadlineExceeded, err)
	}
	return err
}
