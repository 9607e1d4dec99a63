package keys

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// Provider returns the key for a volume. volume names the volume the key is
// for (for example "run"); providers may ignore it.
type Provider interface {
	Key(ctx context.Context, volume string) ([]byte, error)
}

// Errors callers may branch on with errors.Is.
var (
	// ErrInsecureKeyFile reports a key file that is not a regular file or
	// that users other than its owner may read or write.
	ErrInsecureKeyFile = errors.New("insecure key file")
	// ErrEmptyKey reports a key of zero length.
	ErrEmptyKey = errors.New("empty key")
	// ErrKeyTooLarge reports a key file or variable larger than MaxKeySize.
	ErrKeyTooLarge = errors.New("key too large")
	// ErrBadSpec reports a key spec Parse does not understand.
	ErrBadSpec = errors.New("bad key spec")
)

// MaxKeySize bounds the keys File and Env return. It is cryptsetup's default
// key file limit (8 MiB), so every key accepted here is accepted there too.
const MaxKeySize = 8 << 20

// DefaultRandomSize is the length of a Random key when Size is zero.
const DefaultRandomSize = 64

// Random returns a fresh random key on every call. The key is never stored:
// a volume formatted with it is unreadable after the process exits, so the
// caller must format the volume again on every launch.
type Random struct {
	// Size is the key length in bytes; zero means DefaultRandomSize.
	Size int
	// Rand is the entropy source; nil means crypto/rand.
	Rand io.Reader
}

// Key implements Provider.
func (r Random) Key(ctx context.Context, volume string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	n := r.Size
	if n == 0 {
		n = DefaultRandomSize
	}
	if n < 0 || n > MaxKeySize {
		return nil, fmt.Errorf("random key for %q: size %d: %w", volume, n, ErrKeyTooLarge)
	}
	src := r.Rand
	if src == nil {
		src = rand.Reader
	}
	k := make([]byte, n)
	if _, err := io.ReadFull(src, k); err != nil {
		return nil, fmt.Errorf("random key for %q: %w", volume, err)
	}
	return k, nil
}

// File reads the key from a file, whole, byte for byte (a trailing newline
// is part of the key, as with cryptsetup --key-file). The file must be a
// regular file that neither group nor others may read or write.
type File struct {
	Path string
}

// Key implements Provider.
func (f File) Key(ctx context.Context, volume string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	fd, err := os.Open(f.Path)
	if err != nil {
		return nil, fmt.Errorf("key file for %q: %w", volume, err)
	}
	defer fd.Close()
	// Stat the open descriptor, not the path, so the checked file is the
	// file read.
	fi, err := fd.Stat()
	if err != nil {
		return nil, fmt.Errorf("key file %s: %w", f.Path, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("key file %s: %v is not a regular file: %w", f.Path, fi.Mode().Type(), ErrInsecureKeyFile)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("key file %s: mode %#o lets group or others access it (chmod 600): %w", f.Path, perm, ErrInsecureKeyFile)
	}
	if fi.Size() > MaxKeySize {
		return nil, fmt.Errorf("key file %s: %d bytes: %w", f.Path, fi.Size(), ErrKeyTooLarge)
	}
	k, err := io.ReadAll(io.LimitReader(fd, MaxKeySize+1))
	if err != nil {
		return nil, fmt.Errorf("key file %s: %w", f.Path, err)
	}
	if len(k) > MaxKeySize {
		return nil, fmt.Errorf("key file %s: %w", f.Path, ErrKeyTooLarge)
	}
	if len(k) == 0 {
		return nil, fmt.Errorf("key file %s: %w", f.Path, ErrEmptyKey)
	}
	return k, nil
}

// Env reads the key from an environment variable, as raw bytes. Meant for
// tests and development: environments are easy to leak.
type Env struct {
	Name string
}

// Key implements Provider.
func (e Env) Key(ctx context.Context, volume string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	v, ok := os.LookupEnv(e.Name)
	if !ok || v == "" {
		return nil, fmt.Errorf("key variable %s for %q: %w", e.Name, volume, ErrEmptyKey)
	}
	if len(v) > MaxKeySize {
		return nil, fmt.Errorf("key variable %s: %w", e.Name, ErrKeyTooLarge)
	}
	return []byte(v), nil
}

// Parse returns the Provider a spec names:
//
//	random:         Random with DefaultRandomSize bytes
//	random:N        Random with N bytes
//	file:PATH       File reading PATH
//	env:NAME        Env reading variable NAME
//	kms:ARN[,OPT=V] KMS: a key sealed by AWS KMS key ARN in the volume's
//	                LUKS2 header, released only to an attested enclave.
//	                Options: cid=N (the parent's vsock CID, default 3),
//	                port=N (vsock port nbd-parent forwards to KMS, default
//	                8000), credentials-port=N (vsock port of the instance
//	                role's credentials, default 8001). Builds with the
//	                fakensm tag (tests only) also take ca=/PATH, PEM roots
//	                replacing the built-in bundle for KMS's TLS
//	                certificate; the default build refuses it. Example:
//	                kms:arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab
func Parse(spec string) (Provider, error) {
	scheme, arg, ok := strings.Cut(spec, ":")
	if !ok {
		return nil, fmt.Errorf("key spec %q: want scheme:argument (random:, file:PATH, env:NAME, kms:ARN): %w", spec, ErrBadSpec)
	}
	switch scheme {
	case "random":
		if arg == "" {
			return Random{}, nil
		}
		n, err := strconv.Atoi(arg)
		if err != nil || n <= 0 || n > MaxKeySize {
			return nil, fmt.Errorf("key spec %q: size must be 1..%d bytes: %w", spec, MaxKeySize, ErrBadSpec)
		}
		return Random{Size: n}, nil
	case "file":
		if arg == "" {
			return nil, fmt.Errorf("key spec %q: missing path: %w", spec, ErrBadSpec)
		}
		return File{Path: arg}, nil
	case "env":
		if arg == "" {
			return nil, fmt.Errorf("key spec %q: missing variable name: %w", spec, ErrBadSpec)
		}
		return Env{Name: arg}, nil
	case "kms":
		return parseKMS(spec, arg)
	default:
		return nil, fmt.Errorf("key spec %q: unknown scheme %q (random, file, env, kms): %w", spec, scheme, ErrBadSpec)
	}
}
