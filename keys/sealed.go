package keys

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"regexp"
	"strconv"
	"strings"
)

// Binding names the volume a sealed key belongs to. A Sealer binds the
// sealed blob to it (for KMS: as the encryption context), so a blob copied
// into another volume's header does not unseal there.
type Binding struct {
	// UUID is the LUKS2 header's UUID (canonical 36-character form).
	UUID string
	// Export is the NBD export name the volume is served under.
	Export string
}

// Sealed is what a Sealer stores next to the volume so that it can unseal
// the key later: the type and fields of a LUKS2 token (crypt.Token without
// the keyslots, which the caller assigns).
type Sealed struct {
	Type   string
	Fields map[string]json.RawMessage
}

// Sealer creates and recovers a volume's key through a party that keeps
// the secret (AWS KMS releasing it only to an attested enclave). Unlike a
// Provider it needs the volume: a new volume gets a fresh key and a blob to
// store in its header (Seal); an existing volume's key is recovered from
// that blob (Unseal). Both bind the blob to b.
//
// The returned key belongs to the caller, who zeroes it after use.
type Sealer interface {
	// TokenType is the type of the LUKS2 tokens it stores (Sealed.Type).
	TokenType() string
	Seal(ctx context.Context, b Binding) (key []byte, s Sealed, err error)
	Unseal(ctx context.Context, b Binding, s Sealed) (key []byte, err error)
}

// ErrSealedKey reports a Provider.Key call on a key that is sealed in the
// volume's header: it needs the volume (a Sealer), not just its name.
var ErrSealedKey = errors.New("the key is sealed in the volume header; unlock it through a Sealer")

// Defaults of a KMS spec's options: the ports nbd-parent forwards to KMS and
// serves credentials on, and the parent's vsock CID in Nitro.
const (
	DefaultKMSParentCID       = 3
	DefaultKMSProxyPort       = 8000
	DefaultKMSCredentialsPort = 8001
)

// KMS is a parsed "kms:" spec: a key sealed by AWS KMS key KeyARN and
// released only to an attested enclave. It describes where to reach KMS
// and credentials; package keys/kms implements the Sealer. As a Provider it
// only returns ErrSealedKey.
type KMS struct {
	// KeyARN is the KMS key: arn:PARTITION:kms:REGION:ACCOUNT:key/ID (or
	// alias/NAME).
	KeyARN string
	// Region and Partition come from the ARN.
	Region, Partition string
	// CID is the parent's vsock CID; ProxyPort the vsock port nbd-parent
	// forwards to kms.REGION.amazonaws.com:443; CredentialsPort the vsock
	// port it serves the instance role's credentials on.
	CID, ProxyPort, CredentialsPort uint32
	// CAFile, when set, is a PEM file of the root CAs that KMS's TLS
	// certificate must chain to, replacing the bundle built into the
	// binary. Only builds with the fakensm tag (the end-to-end tests,
	// pointing it at their fake KMS's CA) parse the ca= option; in the
	// default build it stays empty.
	CAFile string
}

// Key implements Provider: a KMS key needs the volume, see Sealer.
func (k KMS) Key(ctx context.Context, volume string) ([]byte, error) {
	return nil, fmt.Errorf("kms key %s for %q: %w", k.KeyARN, volume, ErrSealedKey)
}

// Host is the KMS endpoint's host name, the TLS ServerName.
func (k KMS) Host() string {
	suffix := "amazonaws.com"
	if k.Partition == "aws-cn" {
		suffix = "amazonaws.com.cn"
	}
	return "kms." + k.Region + "." + suffix
}

var (
	kmsARN    = regexp.MustCompile(`^arn:(aws|aws-cn|aws-us-gov):kms:([a-z]{2}(?:-[a-z]+)+-[0-9]+):([0-9]{12}):(?:key/[0-9A-Za-z-]{1,128}|alias/[0-9A-Za-z/_-]{1,250})$`)
	maxKMSARN = 2048 // KMS's KeyId limit
)

// parseKMS parses "ARN[,option=value...]" (see Parse).
func parseKMS(spec, arg string) (KMS, error) {
	fields := strings.Split(arg, ",")
	k := KMS{KeyARN: fields[0], CID: DefaultKMSParentCID, ProxyPort: DefaultKMSProxyPort, CredentialsPort: DefaultKMSCredentialsPort}
	if len(k.KeyARN) > maxKMSARN {
		return KMS{}, fmt.Errorf("key spec: kms key ARN of %d bytes: %w", len(k.KeyARN), ErrBadSpec)
	}
	m := kmsARN.FindStringSubmatch(k.KeyARN)
	if m == nil {
		return KMS{}, fmt.Errorf("key spec %q: want kms:arn:aws:kms:REGION:ACCOUNT:key/ID: %w", spec, ErrBadSpec)
	}
	k.Partition, k.Region = m[1], m[2]
	for _, o := range fields[1:] {
		name, v, _ := strings.Cut(o, "=")
		port := func(dst *uint32) error {
			n, err := strconv.ParseUint(v, 10, 32)
			if err != nil || n == 0 {
				return fmt.Errorf("key spec %q: %s must be a number above 0: %w", spec, name, ErrBadSpec)
			}
			*dst = uint32(n)
			return nil
		}
		var err error
		switch name {
		case "cid":
			err = port(&k.CID)
		case "port":
			err = port(&k.ProxyPort)
		case "credentials-port":
			err = port(&k.CredentialsPort)
		case "ca":
			switch {
			case !testCAOption:
				err = fmt.Errorf("key spec %q: ca= exists only in test builds (-tags fakensm): KMS's certificate must chain to the built-in roots: %w", spec, ErrBadSpec)
			case !path.IsAbs(v):
				err = fmt.Errorf("key spec %q: ca must be an absolute path: %w", spec, ErrBadSpec)
			}
			k.CAFile = v
		default:
			err = fmt.Errorf("key spec %q: unknown kms option %q (cid, port, credentials-port): %w", spec, name, ErrBadSpec)
		}
		if err != nil {
			return KMS{}, err
		}
	}
	return k, nil
}
