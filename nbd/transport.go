package nbd

import (
	"net"
	"syscall"

	"github.com/mdlayher/vsock"
)

// connKind is the transport under a connection, which decides the system
// calls its data path may use.
type connKind int

const (
	connOther connKind = iota
	connTCP
	connUnix
	connVsock
)

// socketOf returns the raw socket under nc and its kind; raw is nil for
// connections that are not sockets we know (e.g. net.Pipe in tests).
func socketOf(nc net.Conn) (syscall.RawConn, connKind) {
	var (
		raw  syscall.RawConn
		kind connKind
	)
	switch c := nc.(type) {
	case *net.TCPConn:
		raw, _ = c.SyscallConn()
		kind = connTCP
	case *net.UnixConn:
		raw, _ = c.SyscallConn()
		kind = connUnix
	case *vsock.Conn:
		raw, _ = c.SyscallConn()
		kind = connVsock
	}
	if raw == nil {
		return nil, connOther
	}
	return raw, kind
}
