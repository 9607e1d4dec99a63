// Package nbdtest is a small NBD client for tests and tools: it negotiates
// an export with nbdclient.Handshake (or lists them with NBD_OPT_LIST) and issues
// transmission requests with many in flight, matching simple replies to
// requests by cookie in whatever order they arrive. It exists to exercise
// package nbd's server (and other servers) from Go, where nbdinfo and
// nbdcopy cannot reach: error paths, out-of-order replies, raw requests.
package nbdtest

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/enclave-storage/enclave-storage/nbdclient"
)

// Wire constants from the NBD protocol specification.
const (
	magicNBD         = 0x4e42444d41474943
	magicIHaveOpt    = 0x49484156454f5054
	magicOptReply    = 0x0003e889045565a9
	magicRequest     = 0x25609513
	magicSimpleReply = 0x67446698

	optAbort  = 2
	optList   = 3
	repAck    = 1
	repServer = 2
	repErr    = 1 << 31

	maxReply = 64 << 10
)

// Command types and flags, as sent on the wire.
const (
	CmdRead        = 0
	CmdWrite       = 1
	CmdDisc        = 2
	CmdFlush       = 3
	CmdTrim        = 4
	CmdWriteZeroes = 6

	FlagFUA    = 1 << 0
	FlagNoHole = 1 << 1
)

// Transmission flags the server advertised.
const (
	TFlagReadOnly     = 1 << 1
	TFlagSendFlush    = 1 << 2
	TFlagSendFUA      = 1 << 3
	TFlagSendTrim     = 1 << 5
	TFlagWriteZeroes  = 1 << 6
	TFlagCanMultiConn = 1 << 8
)

// Errno is an NBD error value from a reply (EPERM=1, EIO=5, EINVAL=22,
// ENOSPC=28, EOVERFLOW=75, ...).
type Errno uint32

func (e Errno) Error() string { return fmt.Sprintf("nbd: server replied with error %d", uint32(e)) }

// OptionError is an error reply to an option during the handshake.
type OptionError struct {
	Option, Reply uint32
	Message       string
}

func (e *OptionError) Error() string {
	return fmt.Sprintf("nbd: option %d refused with reply %#x: %s", e.Option, e.Reply, e.Message)
}

// Client is one connection in the transmission phase.
type Client struct {
	conn  net.Conn
	Size  uint64 // export size
	Flags uint16 // transmission flags

	wmu    sync.Mutex
	mu     sync.Mutex
	pend   map[uint64]*call
	cookie uint64
	err    error // set once the reply reader stops
	done   chan struct{}
}

type call struct {
	buf []byte // destination of a read's payload
	ch  chan error
}

// Dial connects to addr and negotiates export with NBD_OPT_GO.
func Dial(ctx context.Context, network, addr, export string) (*Client, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	c, err := Handshake(ctx, conn, export)
	if err != nil {
		conn.Close()
		return nil, err
	}
	return c, nil
}

// greet reads the server greeting and sends the client flags.
func greet(conn net.Conn) error {
	var hello [18]byte
	if _, err := io.ReadFull(conn, hello[:]); err != nil {
		return fmt.Errorf("nbd: reading greeting: %w", err)
	}
	if binary.BigEndian.Uint64(hello[0:]) != magicNBD || binary.BigEndian.Uint64(hello[8:]) != magicIHaveOpt {
		return errors.New("nbd: not a newstyle NBD server")
	}
	flags := uint32(1) // NBD_FLAG_C_FIXED_NEWSTYLE
	if binary.BigEndian.Uint16(hello[16:])&2 != 0 {
		flags |= 2 // NBD_FLAG_C_NO_ZEROES
	}
	return binary.Write(conn, binary.BigEndian, flags)
}

// SendOption writes one option request.
func SendOption(w io.Writer, opt uint32, data []byte) error {
	b := binary.BigEndian.AppendUint64(nil, magicIHaveOpt)
	b = binary.BigEndian.AppendUint32(b, opt)
	b = binary.BigEndian.AppendUint32(b, uint32(len(data)))
	_, err := w.Write(append(b, data...))
	return err
}

// ReadOptionReply reads one option reply: its option, type and data.
func ReadOptionReply(r io.Reader) (opt, typ uint32, data []byte, err error) {
	var h [20]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, 0, nil, fmt.Errorf("nbd: reading option reply: %w", err)
	}
	if binary.BigEndian.Uint64(h[0:]) != magicOptReply {
		return 0, 0, nil, errors.New("nbd: bad option reply magic")
	}
	n := binary.BigEndian.Uint32(h[16:])
	if n > maxReply {
		return 0, 0, nil, fmt.Errorf("nbd: option reply of %d bytes", n)
	}
	data = make([]byte, n)
	if _, err := io.ReadFull(r, data); err != nil {
		return 0, 0, nil, fmt.Errorf("nbd: reading option reply: %w", err)
	}
	return binary.BigEndian.Uint32(h[8:]), binary.BigEndian.Uint32(h[12:]), data, nil
}

// List returns the export names a server offers, then aborts the session.
func List(ctx context.Context, conn net.Conn) ([]string, error) {
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
		defer conn.SetDeadline(time.Time{})
	}
	if err := greet(conn); err != nil {
		return nil, err
	}
	if err := SendOption(conn, optList, nil); err != nil {
		return nil, err
	}
	var names []string
	for {
		_, typ, data, err := ReadOptionReply(conn)
		if err != nil {
			return nil, err
		}
		switch {
		case typ == repServer && len(data) >= 4:
			n := binary.BigEndian.Uint32(data)
			if uint64(n) > uint64(len(data)-4) {
				return nil, errors.New("nbd: bad NBD_REP_SERVER")
			}
			names = append(names, string(data[4:4+n]))
		case typ == repAck:
			SendOption(conn, optAbort, nil)
			return names, nil
		case typ&repErr != 0:
			return nil, &OptionError{Option: optList, Reply: typ, Message: string(data)}
		}
	}
}

// Handshake negotiates export on an open connection and starts the reply
// reader. The negotiation is nbdclient.Handshake, the enclave's own (so the
// server's tests exercise the client it will really face); this package
// adds only the transmission phase.
func Handshake(ctx context.Context, conn net.Conn, export string) (*Client, error) {
	exp, err := nbdclient.Handshake(ctx, conn, export)
	if err != nil {
		return nil, err
	}
	c := &Client{conn: conn, Size: exp.Size, Flags: exp.Flags, pend: make(map[uint64]*call), done: make(chan struct{})}
	go c.readReplies()
	return c, nil
}

// readReplies matches replies to pending calls until the connection ends.
func (c *Client) readReplies() {
	var err error
	var h [16]byte
	for {
		if _, err = io.ReadFull(c.conn, h[:]); err != nil {
			break
		}
		if binary.BigEndian.Uint32(h[0:]) != magicSimpleReply {
			err = errors.New("nbd: bad reply magic")
			break
		}
		errno := binary.BigEndian.Uint32(h[4:])
		cookie := binary.BigEndian.Uint64(h[8:])
		c.mu.Lock()
		cl := c.pend[cookie]
		delete(c.pend, cookie)
		c.mu.Unlock()
		if cl == nil {
			err = fmt.Errorf("nbd: reply for unknown cookie %d", cookie)
			break
		}
		if errno != 0 {
			cl.ch <- Errno(errno)
			continue
		}
		if cl.buf != nil {
			if _, err = io.ReadFull(c.conn, cl.buf); err != nil {
				cl.ch <- err
				break
			}
		}
		cl.ch <- nil
	}
	c.mu.Lock()
	if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
		err = io.ErrUnexpectedEOF
	}
	c.err = err
	for k, cl := range c.pend {
		cl.ch <- err
		delete(c.pend, k)
	}
	c.mu.Unlock()
	close(c.done)
}

// Do sends one request and waits for its reply. For CmdRead the payload
// is read into buf (len(buf) must equal length); for CmdWrite buf is sent.
func (c *Client) Do(ctx context.Context, typ, flags uint16, offset uint64, length uint32, buf []byte) error {
	cl := &call{ch: make(chan error, 1)}
	if typ == CmdRead {
		cl.buf = buf
	}
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return c.err
	}
	c.cookie++
	cookie := c.cookie
	c.pend[cookie] = cl
	c.mu.Unlock()

	var payload int
	if typ == CmdWrite {
		payload = len(buf)
	}
	req := make([]byte, 28, 28+payload)
	binary.BigEndian.PutUint32(req[0:], magicRequest)
	binary.BigEndian.PutUint16(req[4:], flags)
	binary.BigEndian.PutUint16(req[6:], typ)
	binary.BigEndian.PutUint64(req[8:], cookie)
	binary.BigEndian.PutUint64(req[16:], offset)
	binary.BigEndian.PutUint32(req[24:], length)
	if typ == CmdWrite {
		req = append(req, buf...)
	}
	c.wmu.Lock()
	_, err := c.conn.Write(req)
	c.wmu.Unlock()
	if err != nil {
		return err
	}
	select {
	case err := <-cl.ch:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// ReadAt reads len(p) bytes at off.
func (c *Client) ReadAt(ctx context.Context, p []byte, off uint64) error {
	return c.Do(ctx, CmdRead, 0, off, uint32(len(p)), p)
}

// WriteAt writes p at off; flags may include FlagFUA.
func (c *Client) WriteAt(ctx context.Context, p []byte, off uint64, flags uint16) error {
	return c.Do(ctx, CmdWrite, flags, off, uint32(len(p)), p)
}

// Flush asks the server to make completed writes durable.
func (c *Client) Flush(ctx context.Context) error { return c.Do(ctx, CmdFlush, 0, 0, 0, nil) }

// Trim discards a range.
func (c *Client) Trim(ctx context.Context, off uint64, n uint32) error {
	return c.Do(ctx, CmdTrim, 0, off, n, nil)
}

// WriteZeroes zeroes a range; flags may include FlagNoHole and FlagFUA.
func (c *Client) WriteZeroes(ctx context.Context, off uint64, n uint32, flags uint16) error {
	return c.Do(ctx, CmdWriteZeroes, flags, off, n, nil)
}

// Close sends NBD_CMD_DISC, waits for the server to close the connection
// (it answers every request in flight first), and closes it.
func (c *Client) Close() error {
	req := make([]byte, 28)
	binary.BigEndian.PutUint32(req[0:], magicRequest)
	binary.BigEndian.PutUint16(req[6:], CmdDisc)
	c.wmu.Lock()
	_, err := c.conn.Write(req)
	c.wmu.Unlock()
	if err == nil {
		select {
		case <-c.done:
		case <-time.After(10 * time.Second):
			err = errors.New("nbd: server did not close the connection after NBD_CMD_DISC")
		}
	}
	if cerr := c.conn.Close(); err == nil && cerr != nil && !errors.Is(cerr, net.ErrClosed) {
		err = cerr
	}
	return err
}
