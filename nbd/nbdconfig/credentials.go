package nbdconfig

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

// CredentialsListen is a parsed credentials endpoint (package parentcreds).
type CredentialsListen struct {
	Listen Addr
	// PeerCID is the only vsock context ID answered (?cid=N); 0: any.
	PeerCID uint32
}

// ParseCredentials parses a credentials endpoint: vsock://[CID]:PORT with
// an optional ?cid=N, the enclave's CID, the only peer answered; or
// unix:///PATH (for a local relay; the socket's file mode guards it).
// tcp:// is refused: the role's credentials must not be served on a
// network anyone on it can reach.
func ParseCredentials(s string) (CredentialsListen, error) {
	bad := func(why string) (CredentialsListen, error) {
		return CredentialsListen{}, fmt.Errorf("nbdconfig: credentials address %q: %s", s, why)
	}
	base, query, _ := strings.Cut(s, "?")
	a, err := ParseListen(base)
	if err != nil {
		return CredentialsListen{}, err
	}
	if a.Network != "vsock" && a.Network != "unix" {
		return bad("scheme must be vsock or unix: credentials are never served over tcp")
	}
	c := CredentialsListen{Listen: a}
	if query == "" {
		return c, nil
	}
	if a.Network != "vsock" {
		return bad("?cid= applies to vsock only")
	}
	q, err := url.ParseQuery(query)
	if err != nil {
		return bad(err.Error())
	}
	for k := range q {
		if k != "cid" {
			return bad("unknown option " + k + " (want ?cid=N)")
		}
	}
	if len(q["cid"]) != 1 {
		return bad("want one ?cid=N")
	}
	cid, err := strconv.ParseUint(q.Get("cid"), 10, 32)
	if err != nil || cid == 0 {
		return bad("?cid= must be a non-zero number (the enclave's CID)")
	}
	c.PeerCID = uint32(cid)
	return c, nil
}
