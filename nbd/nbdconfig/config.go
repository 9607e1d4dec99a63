package nbdconfig

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/enclave-storage/enclave-storage/vsockproxy"
)

// Config is the daemon's configuration.
type Config struct {
	Listen        []string `json:"listen"`
	DefaultExport string   `json:"default_export,omitempty"`
	MetricsAddr   string   `json:"metrics_addr,omitempty"`
	Exports       []Export `json:"exports"`
	// Forward lists LISTEN=HOST:PORT forwarders (see ParseForward), e.g.
	// "vsock://:8000=kms.us-east-1.amazonaws.com:443".
	Forward []string `json:"forward,omitempty"`
	// Credentials lists endpoints serving the instance role's temporary
	// AWS credentials to the enclave (package parentcreds): vsock or unix
	// only, vsock with an optional ?cid=N allowing one peer (see
	// ParseCredentials).
	Credentials []string `json:"credentials,omitempty"`
	// Region is the AWS region passed to the enclave with the credentials;
	// empty: from the AWS configuration or the instance metadata.
	Region string `json:"region,omitempty"`
}

// cidAny is VMADDR_CID_ANY, which no peer has.
const cidAny = 0xffffffff

// Forward is one forwarder: connections accepted on Listen are pumped to
// Target, and only there.
type Forward struct {
	Listen Addr
	Target string // HOST:PORT
}

// ParseForward parses LISTEN=HOST:PORT, e.g.
// "vsock://:8000=kms.us-east-1.amazonaws.com:443".
func ParseForward(s string) (Forward, error) {
	l, target, ok := strings.Cut(s, "=")
	if !ok {
		return Forward{}, fmt.Errorf("nbdconfig: forward %q: want LISTEN=HOST:PORT", s)
	}
	a, err := ParseListen(l)
	if err != nil {
		return Forward{}, fmt.Errorf("nbdconfig: forward %q: %w", s, err)
	}
	if _, _, err := vsockproxy.ParseTarget(target); err != nil {
		return Forward{}, fmt.Errorf("nbdconfig: forward %q: %w", s, err)
	}
	return Forward{Listen: a, Target: target}, nil
}

// Export is one served file.
type Export struct {
	Name        string `json:"name"`
	Path        string `json:"path"`
	ReadOnly    bool   `json:"read_only,omitempty"`
	Size        Size   `json:"size,omitempty"`
	Description string `json:"description,omitempty"`
	// CIDs, if not empty, binds the export to the vsock peers with these
	// context IDs (the enclaves this parent runs); every other peer,
	// TCP and unix socket peers included, is refused it (nbd.Export's
	// PeerCIDs).
	CIDs []uint32 `json:"cids,omitempty"`
}

// Size is a byte count; in JSON either a number or a string with an
// optional binary suffix (K, M, G, T, with or without "iB"/"B").
type Size int64

// UnmarshalJSON accepts 1073741824, "1073741824", "1G" or "1GiB".
func (s *Size) UnmarshalJSON(b []byte) error {
	var str string
	if len(b) > 0 && b[0] == '"' {
		if err := json.Unmarshal(b, &str); err != nil {
			return err
		}
	} else {
		str = string(b)
	}
	v, err := ParseSize(str)
	if err != nil {
		return err
	}
	*s = Size(v)
	return nil
}

// ParseSize parses a byte count with an optional binary suffix.
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	t = strings.TrimSuffix(strings.TrimSuffix(t, "B"), "i")
	shift := 0
	if t != "" {
		switch t[len(t)-1] {
		case 'k', 'K':
			shift = 10
		case 'm', 'M':
			shift = 20
		case 'g', 'G':
			shift = 30
		case 't', 'T':
			shift = 40
		}
		if shift != 0 {
			t = t[:len(t)-1]
		}
	}
	v, err := strconv.ParseInt(t, 10, 64)
	if err != nil || v < 0 || v > (1<<62)>>shift {
		return 0, fmt.Errorf("nbdconfig: bad size %q (want bytes, or a number with K, M, G or T)", s)
	}
	return v << shift, nil
}

// Load reads a JSON configuration file.
func Load(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("nbdconfig: %w", err)
	}
	c, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("nbdconfig: %s: %w", path, err)
	}
	return c, nil
}

// Parse decodes a JSON configuration. It does not Validate it, since
// command line flags may still add to it.
func Parse(b []byte) (*Config, error) {
	var c Config
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(&c); err != nil {
		return nil, err
	}
	if d.More() {
		return nil, errors.New("trailing data after the configuration object")
	}
	return &c, nil
}

// ExportSyntax is the --export flag's syntax, for usage messages.
const ExportSyntax = "NAME=PATH[,ro][,size=SIZE][,desc=TEXT][,cid=N]..."

// ParseExport parses the --export flag syntax:
//
//	NAME=PATH[,ro][,size=SIZE][,desc=TEXT][,cid=N]...
//
// cid=N may be repeated to allow several peers.
func ParseExport(s string) (Export, error) {
	name, rest, ok := strings.Cut(s, "=")
	if !ok || name == "" {
		return Export{}, fmt.Errorf("nbdconfig: export %q: want %s", s, ExportSyntax)
	}
	parts := strings.Split(rest, ",")
	e := Export{Name: name, Path: parts[0]}
	for _, p := range parts[1:] {
		k, v, _ := strings.Cut(p, "=")
		switch k {
		case "ro":
			e.ReadOnly = true
		case "rw":
			e.ReadOnly = false
		case "size":
			n, err := ParseSize(v)
			if err != nil {
				return Export{}, fmt.Errorf("nbdconfig: export %q: %w", name, err)
			}
			e.Size = Size(n)
		case "desc":
			e.Description = v
		case "cid":
			cid, err := strconv.ParseUint(v, 10, 32)
			if err != nil {
				return Export{}, fmt.Errorf("nbdconfig: export %q: cid %q is not a vsock context ID", name, v)
			}
			e.CIDs = append(e.CIDs, uint32(cid))
		default:
			return Export{}, fmt.Errorf("nbdconfig: export %q: unknown option %q", name, p)
		}
	}
	return e, nil
}

// Validate checks that the configuration can be served.
func (c *Config) Validate() error {
	if len(c.Exports) == 0 {
		return errors.New("nbdconfig: no exports configured")
	}
	if len(c.Listen) == 0 {
		return errors.New("nbdconfig: no listen addresses configured")
	}
	seen := map[string]bool{}
	var bound []string // exports bound to vsock CIDs
	for _, e := range c.Exports {
		switch {
		case e.Path == "":
			return fmt.Errorf("nbdconfig: export %q has no path", e.Name)
		case len(e.Name) > 4096:
			return errors.New("nbdconfig: export name longer than 4096 bytes")
		case seen[e.Name]:
			return fmt.Errorf("nbdconfig: export %q configured twice", e.Name)
		case e.Size < 0:
			return fmt.Errorf("nbdconfig: export %q: negative size", e.Name)
		case slices.Contains(e.CIDs, cidAny):
			return fmt.Errorf("nbdconfig: export %q: cid %d (VMADDR_CID_ANY) names no peer", e.Name, uint32(cidAny))
		}
		seen[e.Name] = true
		if len(e.CIDs) > 0 {
			bound = append(bound, e.Name)
		}
	}
	if c.DefaultExport != "" && !seen[c.DefaultExport] {
		return fmt.Errorf("nbdconfig: default export %q is not configured", c.DefaultExport)
	}
	onVsock := false
	for _, l := range c.Listen {
		a, err := ParseListen(l)
		if err != nil {
			return err
		}
		onVsock = onVsock || a.Network == "vsock"
	}
	if len(bound) > 0 && !onVsock {
		// Only vsock peers have a CID: nobody could use these exports.
		return fmt.Errorf("nbdconfig: exports %q are bound to vsock CIDs but no vsock listener is configured", bound)
	}
	for _, l := range c.Credentials {
		if _, err := ParseCredentials(l); err != nil {
			return err
		}
	}
	for _, f := range c.Forward {
		if _, err := ParseForward(f); err != nil {
			return err
		}
	}
	return nil
}
