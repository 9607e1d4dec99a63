//go:build linux

package nbd

import (
	"io"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// writevRaw writes every buffer of iov to the socket behind rc with one
// sendmsg(2) (writev's gather), waiting in the poller while the socket is
// full. net.Buffers gathers only on the standard library's connections:
// vsock's would be written one buffer, one system call, at a time.
func writevRaw(rc syscall.RawConn, iov [][]byte) error {
	const iovMax = 1024 // IOV_MAX
	var werr error
	err := rc.Write(func(fd uintptr) bool {
		for len(iov) > 0 {
			n, err := unix.SendmsgBuffers(int(fd), iov[:min(len(iov), iovMax)], nil, nil, 0)
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

// vsockSendWait bounds how long one send on a vsock connection sleeps in
// the kernel waiting for the peer's credit (SO_SNDTIMEO) before it
// returns what it wrote and leaves the waiting to Go's poller, which
// honours deadlines and Close: so a client that stops reading delays the
// end of its connection by at most this much.
const vsockSendWait = 20 * time.Millisecond

// waitingSends makes sends on the socket behind rc wait in the kernel for
// room, bounded by vsockSendWait, instead of failing with EAGAIN at once,
// and returns the reader the connection must be read through from then
// on; nil, with the socket unchanged, if it cannot be switched.
//
// Why: a vsock peer may hold at most its receive buffer of our data
// unread (libnbd keeps the kernel's 256 KiB), so a 1 MiB read reply
// waits for credit several times. Non-blocking, each wait is an EAGAIN, a
// trip through the poller and a goroutine wake-up; blocking, the kernel
// sleeps the writer and wakes it on the credit update, as it does for
// nbdkit's threads. Sequential 1 MiB reads over vsock loopback in the
// microVM went from 0.99x to 1.29x nbdkit (TestVsockBench/variants,
// 2026-12-02, one run of five rounds).
//
// O_NONBLOCK belongs to the open file, so reads would block too, holding
// their thread and deaf to deadlines and Close; the returned reader asks
// with MSG_DONTWAIT instead and waits in the poller, as net.Conn does.
// Writes keep the poller for anything longer than vsockSendWait, so
// write deadlines and Close still end a stuck send.
func waitingSends(rc syscall.RawConn) io.Reader {
	var err error
	cerr := rc.Control(func(fd uintptr) {
		tv := unix.NsecToTimeval(vsockSendWait.Nanoseconds())
		if err = unix.SetsockoptTimeval(int(fd), unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv); err != nil {
			return
		}
		err = unix.SetNonblock(int(fd), false)
	})
	if cerr != nil || err != nil {
		return nil
	}
	return pollReader{rc}
}

// pollReader reads a socket whose file is in blocking mode without ever
// blocking in the kernel: recv with MSG_DONTWAIT, and Go's poller while
// nothing is there, so read deadlines and Close work as on a net.Conn.
type pollReader struct{ rc syscall.RawConn }

func (r pollReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	var (
		n   int
		err error
	)
	if rerr := r.rc.Read(func(fd uintptr) bool {
		for {
			n, _, err = unix.Recvfrom(int(fd), p, unix.MSG_DONTWAIT)
			if err != unix.EINTR {
				return err != unix.EAGAIN
			}
		}
	}); rerr != nil {
		return 0, rerr
	}
	switch {
	case err != nil:
		return 0, err
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}
