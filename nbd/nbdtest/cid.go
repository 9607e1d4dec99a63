package nbdtest

import (
	"net"

	"github.com/mdlayher/vsock"
)

// CIDListener is a TCP listener whose connections report a vsock remote
// address of context ID CID, as vsock.Listener's do: a server's peer
// check (nbd.Export.PeerCIDs) runs as it does on vsock, with no vsock
// transport needed.
type CIDListener struct {
	net.Listener
	CID uint32
}

// Accept accepts a connection and gives it the vsock remote address.
func (l CIDListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return cidConn{c, &vsock.Addr{ContextID: l.CID, Port: 1024}}, nil
}

type cidConn struct {
	net.Conn
	remote *vsock.Addr
}

func (c cidConn) RemoteAddr() net.Addr { return c.remote }
