package heartbeat

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// Protocol constants, as nitro-cli and the reference init define them.
const (
	Byte        = 0xB7 // HEART_BEAT
	DefaultCID  = 3    // VMADDR_CID_PARENT
	DefaultPort = 9000 // ENCLAVE_READY_VSOCK_PORT
	// DefaultTimeout bounds the whole exchange; the reference init's
	// TIMEOUT is 20 s too.
	DefaultTimeout = 20 * time.Second
)

// Errors callers may branch on with errors.Is.
var (
	// ErrNoEcho: the parent accepted the heartbeat but sent nothing back
	// (it closed the connection, or the timeout expired first).
	ErrNoEcho = errors.New("heartbeat: no echo from the parent")
	// ErrWrongEcho: the parent answered with a byte other than 0xB7.
	ErrWrongEcho = errors.New("heartbeat: the parent echoed the wrong byte")
)

// A Dialer connects to the parent's heartbeat listener.
type Dialer func(ctx context.Context) (net.Conn, error)

// Send connects with dial, writes 0xB7 and requires 0xB7 back, all within
// timeout (DefaultTimeout when zero) or until ctx is done. The connection
// is closed before Send returns.
func Send(ctx context.Context, dial Dialer, timeout time.Duration) error {
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn, err := dial(ctx)
	if err != nil {
		return fmt.Errorf("heartbeat: connecting: %w", err)
	}
	defer conn.Close()
	// Deadlines for the I/O; closing on cancellation covers connections
	// whose deadlines the transport ignores.
	if d, ok := ctx.Deadline(); ok {
		conn.SetDeadline(d)
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	if _, err := conn.Write([]byte{Byte}); err != nil {
		return fmt.Errorf("heartbeat: writing: %w", err)
	}
	var b [1]byte
	if _, err := io.ReadFull(conn, b[:]); err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return fmt.Errorf("%w: %w", ErrNoEcho, err)
	}
	if b[0] != Byte {
		return fmt.Errorf("%w: %#02x, want %#02x", ErrWrongEcho, b[0], Byte)
	}
	return nil
}

// Echo plays nitro-cli's part on one accepted connection: it reads one
// byte and, when it is 0xB7, writes it back. It reports what it read.
func Echo(ctx context.Context, conn net.Conn) error {
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	var b [1]byte
	if _, err := io.ReadFull(conn, b[:]); err != nil {
		return fmt.Errorf("heartbeat: reading: %w", err)
	}
	if b[0] != Byte {
		return fmt.Errorf("%w: received %#02x", ErrWrongEcho, b[0])
	}
	if _, err := conn.Write(b[:]); err != nil {
		return fmt.Errorf("heartbeat: echoing: %w", err)
	}
	return nil
}
