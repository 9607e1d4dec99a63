//go:build linux

package nbd

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// Large write payloads on TCP and unix sockets skip user space: the
// reader splice(2)s them from the socket into a pipe, which takes
// references to the received pages instead of copying them, and the
// worker splices the pipe into the file, the one copy left (into the
// page cache). Receiving into a buffer and pwrite-ing it copied every
// byte twice; the first copy was a fifth of the server's CPU under a
// sequential write load.

const (
	pipeSize  = 1 << 20   // F_SETPIPE_SZ; the kernel's default maximum for unprivileged users
	spliceMin = 128 << 10 // smaller payloads are read as usual
	maxPipes  = 8         // pipes per connection; more writes in flight are read as usual
)

// payloadPipe is a pipe holding one write payload.
type payloadPipe struct{ r, w int }

func (p *payloadPipe) close() {
	unix.Close(p.r)
	unix.Close(p.w)
}

// pipePool is a connection's set of payload pipes.
type pipePool struct {
	mu       sync.Mutex
	free     []*payloadPipe
	made     int
	disabled bool // pipes cannot be made big enough here
}

// get returns an empty pipe, or nil when maxPipes are in use or pipes
// are unavailable.
func (pp *pipePool) get() *payloadPipe {
	pp.mu.Lock()
	defer pp.mu.Unlock()
	if n := len(pp.free); n > 0 {
		p := pp.free[n-1]
		pp.free = pp.free[:n-1]
		return p
	}
	if pp.disabled || pp.made >= maxPipes {
		return nil
	}
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_CLOEXEC); err != nil {
		return nil
	}
	p := &payloadPipe{r: fds[0], w: fds[1]}
	if got, err := unix.FcntlInt(uintptr(p.w), unix.F_SETPIPE_SZ, pipeSize); err != nil || got < pipeSize {
		// Over the per-user pipe quota, or a lowered pipe-max-size.
		p.close()
		pp.disabled = true
		return nil
	}
	pp.made++
	return p
}

// put returns an empty pipe to the pool; a pipe that may still hold data
// (after an error) must be dropped with drop instead.
func (pp *pipePool) put(p *payloadPipe) {
	pp.mu.Lock()
	pp.free = append(pp.free, p)
	pp.mu.Unlock()
}

// drop closes a pipe in an unknown state.
func (pp *pipePool) drop(p *payloadPipe) {
	p.close()
	pp.mu.Lock()
	pp.made--
	pp.mu.Unlock()
}

// closeAll closes the pooled pipes once no request uses them.
func (pp *pipePool) closeAll() {
	pp.mu.Lock()
	defer pp.mu.Unlock()
	for _, p := range pp.free {
		p.close()
	}
	pp.free = nil
}

// pipeWriter is implemented by backends (File on Linux) that can write a
// range from a pipe (splice).
type pipeWriter interface {
	writeFromPipe(fd int, off, n int64) error
}

// readPayloadPipe reads an n-byte write payload into a pipe when it can:
// the backend writes from pipes, the connection is a TCP or unix socket
// (raw non-nil), n is in [spliceMin, pipeSize] and a pipe is free. It
// returns (nil, nil, nil) when it cannot, having read nothing. When the
// pipe fills before the payload is in (it holds one page per received
// fragment, so tiny fragments can fill it early), the payload is moved
// to a pooled buffer instead, returned as buf.
func (ss *session) readPayloadPipe(br *bufio.Reader, n int, raw, tcp syscall.RawConn) (*payloadPipe, *buffer, error) {
	if raw == nil || n < spliceMin || n > pipeSize {
		return nil, nil, nil
	}
	if _, ok := ss.e.Backend.(pipeWriter); !ok {
		return nil, nil, nil
	}
	p := ss.pipes.get()
	if p == nil {
		return nil, nil, nil
	}
	got := 0
	if b := min(br.Buffered(), n); b > 0 {
		// What bufio already holds goes in first; the pipe is empty and
		// far bigger than bufio's buffer, so this write cannot block.
		head, _ := br.Peek(b)
		if w, err := unix.Write(p.w, head); err != nil || w != b {
			ss.pipes.drop(p)
			return nil, nil, fmt.Errorf("filling payload pipe: %w", errOr(err, io.ErrShortWrite))
		}
		br.Discard(b)
		got = b
	}
	full := false
	raised := false
	var serr error
	for got < n && !full && serr == nil {
		if rem := n - got; tcp != nil && rem >= 64<<10 {
			raised = setRcvLowat(tcp, min(rem, 512<<10)) || raised
		} else if raised {
			setRcvLowat(tcp, 1)
			raised = false
		}
		err := raw.Read(func(fd uintptr) bool {
			progress := false
			for got < n {
				m, err := unix.Splice(int(fd), nil, p.w, nil, n-got, unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
				switch {
				case m > 0:
					got += int(m)
					progress = true
				case err == unix.EINTR:
				case err == unix.EAGAIN:
					// Either the socket is empty or the pipe is full;
					// bytes waiting in the socket mean the latter.
					if q, qerr := unix.IoctlGetInt(int(fd), unix.SIOCINQ); qerr == nil && q > 0 {
						full = true
						return true
					}
					return progress // wait for data unless we moved some
				case err != nil:
					serr = err
					return true
				default: // 0 bytes: the client closed the connection
					serr = io.ErrUnexpectedEOF
					return true
				}
			}
			return true
		})
		if err != nil && serr == nil {
			serr = err
		}
	}
	if raised {
		setRcvLowat(tcp, 1)
	}
	if serr != nil {
		ss.pipes.drop(p)
		return nil, nil, serr
	}
	if !full {
		return p, nil, nil
	}
	// Pipe full: move what it holds to a buffer and read the rest there.
	buf := ss.s.bufs.get(n)
	if err := readPipe(p.r, buf.b[:got]); err != nil {
		ss.s.bufs.put(buf)
		ss.pipes.drop(p)
		return nil, nil, fmt.Errorf("draining payload pipe: %w", err)
	}
	ss.pipes.put(p)
	if err := ss.readPayload(br, buf.b[got:], tcp); err != nil {
		ss.s.bufs.put(buf)
		return nil, nil, err
	}
	return nil, buf, nil
}

// writePipe writes the n bytes held in p at off and returns the pipe to
// the pool, or drops it if it may still hold data.
func (ss *session) writePipe(p *payloadPipe, off, n int64) error {
	err := ss.e.Backend.(pipeWriter).writeFromPipe(p.r, off, n)
	if err != nil {
		ss.pipes.drop(p)
		return err
	}
	ss.pipes.put(p)
	return nil
}

func errOr(err, def error) error {
	if err != nil {
		return err
	}
	return def
}

// spliceToFile moves n bytes from the pipe fd into f at off.
func spliceToFile(pipe int, f *os.File, off, n int64) error {
	dst := int(f.Fd())
	for n > 0 {
		m, err := unix.Splice(pipe, nil, dst, &off, int(n), unix.SPLICE_F_MOVE)
		switch {
		case err == unix.EINTR:
		case err != nil:
			return err
		case m == 0:
			return io.ErrUnexpectedEOF
		default:
			n -= int64(m)
		}
	}
	return nil
}

// readPipe fills b from a pipe that holds at least len(b) bytes.
func readPipe(fd int, b []byte) error {
	for len(b) > 0 {
		m, err := unix.Read(fd, b)
		switch {
		case err == unix.EINTR:
		case err != nil:
			return err
		case m == 0:
			return io.ErrUnexpectedEOF
		default:
			b = b[m:]
		}
	}
	return nil
}

// writevRaw writes every buffer of iov to the socket behind rc with one
// sendmsg(2) (writev's gather, plus flags), waiting in the poller while
// the socket is full. net.Buffers gathers only on the standard library's
// connections: vsock's would be written one buffer, one system call, at a
// time. With more, MSG_MORE tells TCP that data follows at once (the
// sendfile after a read's header), so the header does not leave as a
// segment of its own that wakes the client for 16 bytes.
func writevRaw(rc syscall.RawConn, iov [][]byte, more bool) error {
	const iovMax = 1024 // IOV_MAX
	flags := 0
	if more {
		flags = unix.MSG_MORE
	}
	var werr error
	err := rc.Write(func(fd uintptr) bool {
		for len(iov) > 0 {
			n, err := unix.SendmsgBuffers(int(fd), iov[:min(len(iov), iovMax)], nil, nil, flags)
			switch {
			case err == unix.EAGAIN:
				return false
			case err == unix.EINTR:
				continue
			case err != nil:
				werr = err
				return true
			}
			for n > 0 {
				if n < len(iov[0]) {
					iov[0] = iov[0][n:]
					break
				}
				n -= len(iov[0])
				iov = iov[1:]
			}
			for len(iov) > 0 && len(iov[0]) == 0 {
				iov = iov[1:]
			}
		}
		return true
	})
	if err != nil {
		return err
	}
	return werr
}

// vsockBufferSize is the receive buffer asked for on vsock connections.
// The kernel's default, 256 KiB, is also the credit a vsock peer may
// send without waiting for us to read: a client with eight 1 MiB writes
// in flight would stall on it after a quarter of the first.
const vsockBufferSize = 4 << 20

// setVsockBuffer raises a vsock socket's buffer to n bytes: its ceiling
// (SO_VM_SOCKETS_BUFFER_MAX_SIZE, 256 KiB by default) first, then the
// size, which the transport advertises to the peer as its credit.
func setVsockBuffer(rc syscall.RawConn, n uint64) {
	rc.Control(func(fd uintptr) {
		unix.SetsockoptUint64(int(fd), unix.AF_VSOCK, unix.SO_VM_SOCKETS_BUFFER_MAX_SIZE, n)
		unix.SetsockoptUint64(int(fd), unix.AF_VSOCK, unix.SO_VM_SOCKETS_BUFFER_SIZE, n)
	})
}
