//go:build linux

package nbd

import (
	"syscall"

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
