package nbdconfig

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"

	"github.com/mdlayher/vsock"
)

// Addr is a parsed listen address.
type Addr struct {
	Network string // "vsock", "tcp" or "unix"
	Address string // host:port or socket path (tcp, unix)
	CID     uint32 // vsock: 0 means any local CID
	Port    uint32 // vsock
}

func (a Addr) String() string {
	if a.Network == "vsock" {
		if a.CID == 0 {
			return fmt.Sprintf("vsock://:%d", a.Port)
		}
		return fmt.Sprintf("vsock://%d:%d", a.CID, a.Port)
	}
	if a.Network == "unix" {
		return "unix://" + a.Address
	}
	return a.Network + "://" + a.Address
}

// ParseListen parses vsock://[CID]:PORT, tcp://HOST:PORT or
// unix:///PATH.
func ParseListen(s string) (Addr, error) {
	u, err := url.Parse(s)
	if err != nil {
		return Addr{}, fmt.Errorf("nbdconfig: listen address %q: %w", s, err)
	}
	bad := func(why string) (Addr, error) {
		return Addr{}, fmt.Errorf("nbdconfig: listen address %q: %s", s, why)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return bad("unexpected query, fragment or user")
	}
	switch u.Scheme {
	case "tcp":
		if u.Port() == "" || u.Path != "" {
			return bad("want tcp://HOST:PORT")
		}
		return Addr{Network: "tcp", Address: u.Host}, nil
	case "unix":
		if u.Host != "" || u.Path == "" || u.Path[0] != '/' {
			return bad("want unix:///ABSOLUTE/PATH")
		}
		return Addr{Network: "unix", Address: u.Path}, nil
	case "vsock":
		if u.Path != "" {
			return bad("want vsock://[CID]:PORT")
		}
		port, err := strconv.ParseUint(u.Port(), 10, 32)
		if err != nil {
			return bad("want vsock://[CID]:PORT with a numeric port")
		}
		a := Addr{Network: "vsock", Port: uint32(port)}
		if h := u.Hostname(); h != "" {
			cid, err := strconv.ParseUint(h, 10, 32)
			if err != nil {
				return bad("CID must be a number")
			}
			a.CID = uint32(cid)
		}
		return a, nil
	}
	return bad("scheme must be vsock, tcp or unix")
}

// Listen opens a listener for a. For unix sockets, a stale socket file left
// by a crashed daemon (nothing accepts on it) is removed first; a live one
// is an error.
func Listen(ctx context.Context, a Addr) (net.Listener, error) {
	switch a.Network {
	case "vsock":
		var (
			l   *vsock.Listener
			err error
		)
		if a.CID == 0 {
			l, err = vsock.Listen(a.Port, nil)
		} else {
			l, err = vsock.ListenContextID(a.CID, a.Port, nil)
		}
		if err != nil {
			return nil, fmt.Errorf("nbdconfig: listen on %s: %w", a, err)
		}
		return l, nil
	case "unix":
		if fi, err := os.Lstat(a.Address); err == nil && fi.Mode()&os.ModeSocket != 0 {
			var d net.Dialer
			if c, err := d.DialContext(ctx, "unix", a.Address); err == nil {
				c.Close()
				return nil, fmt.Errorf("nbdconfig: listen on %s: another process is serving this socket", a)
			}
			os.Remove(a.Address)
		}
	}
	var lc net.ListenConfig
	l, err := lc.Listen(ctx, a.Network, a.Address)
	if err != nil {
		return nil, fmt.Errorf("nbdconfig: listen on %s: %w", a, err)
	}
	return l, nil
}
