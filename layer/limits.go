package layer

import (
	"archive/tar"
	"errors"
	"fmt"
	"strings"
)

// Default limits: generous for real images, small enough that a crafted
// layer (a few MB of gzip declaring terabytes, millions of entries or
// megabytes of xattrs per entry) fails fast instead of exhausting the
// build host.
const (
	DefaultMaxXattrValue = 64 << 10 // Linux's XATTR_SIZE_MAX
	DefaultMaxXattrTotal = 64 << 20
	DefaultMaxEntries    = 10_000_000
	DefaultMaxFileSize   = 64 << 30
	DefaultMaxSize       = 64 << 30
	// MaxPath is the longest entry name or link target accepted (Linux's
	// PATH_MAX): a longer one cannot be used inside the enclave anyway,
	// and a 1 MiB PAX path of "a/a/a/..." would make half a million
	// directories from one entry.
	MaxPath = 4096
)

// ErrLimit is wrapped by every *LimitError.
var ErrLimit = errors.New("build limit exceeded")

// Limits bound what layers may make the flattener hold or write. A zero
// field means its default.
type Limits struct {
	// MaxXattrValue bounds one extended attribute value, in bytes; it is
	// checked as the tar header is read, before the value is kept.
	MaxXattrValue int64
	// MaxXattrTotal bounds the extended attribute bytes (names and
	// values) of all entries of all layers.
	MaxXattrTotal int64
	// MaxEntries bounds the tar entries of all layers together.
	MaxEntries int64
	// MaxFileSize bounds one regular file's size.
	MaxFileSize int64
	// MaxSize bounds the content of all regular files of all layers (the
	// spool), checked from the tar header before spooling.
	MaxSize int64
}

func (l Limits) withDefaults() Limits {
	def := func(v *int64, d int64) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&l.MaxXattrValue, DefaultMaxXattrValue)
	def(&l.MaxXattrTotal, DefaultMaxXattrTotal)
	def(&l.MaxEntries, DefaultMaxEntries)
	def(&l.MaxFileSize, DefaultMaxFileSize)
	def(&l.MaxSize, DefaultMaxSize)
	return l
}

// Limit names, as in LimitError.Limit; they match imgbuild's flags.
const (
	LimitXattrValue = "max-xattr-value"
	LimitXattrTotal = "max-xattr-total"
	LimitEntries    = "max-entries"
	LimitFileSize   = "max-file-size"
	LimitSize       = "max-size"
)

// LimitError reports a layer going over one of the Limits. It is wrapped
// in an *EntryError naming the layer and entry, and matches ErrLimit.
type LimitError struct {
	Limit string // LimitXattrValue...
	Max   int64  // the limit in force
	Got   int64  // what the entry needed (at least)
}

func (e *LimitError) Error() string {
	return fmt.Sprintf("%s limit %d exceeded (%d)", e.Limit, e.Max, e.Got)
}

// Is makes errors.Is(err, ErrLimit) true.
func (e *LimitError) Is(target error) bool { return target == ErrLimit }

// Policy says what of the image's privileges survive the build. The zero
// Policy drops device nodes and overlayfs's trusted.overlay.* attributes
// and keeps setuid/setgid bits and file capabilities, as docker does.
type Policy struct {
	// KeepDevices keeps character and block device nodes. By default they
	// are dropped (counted in Stats.DroppedDevices): the enclave binds its
	// own /dev, and a node of the image would reach any kernel device
	// (mounted nodev it is inert anyway).
	KeepDevices bool
	// DropSetuid clears the setuid and setgid bits of regular files.
	DropSetuid bool
	// DropCaps drops security.capability (file capabilities).
	DropCaps bool
}

// Stats counts what the policy removed.
type Stats struct {
	DroppedDevices int64 // device nodes not written
	DroppedXattrs  int64 // trusted.overlay.* and security.* (but capability) attributes
	ClearedSetuid  int64 // regular files whose setuid/setgid bits were cleared
}

// keepXattr reports whether the attribute name survives the policy:
// trusted.overlay.* would steer the enclave's overlayfs (redirects,
// metacopy, opaque directories) from inside the lower layer, as container
// runtimes refuse too; security.* labels other than capability belong to
// the build host's LSM and IMA/EVM policies, which the enclave does not
// run.
func (p Policy) keepXattr(name string) bool {
	switch {
	case strings.HasPrefix(name, "trusted.overlay."):
		return false
	case name == "security.capability":
		return !p.DropCaps
	case strings.HasPrefix(name, "security."):
		return false
	}
	return true
}

// checkHeader applies the size limits to hdr before anything of it is
// kept: entry count, path lengths, file and total size.
func (fl *Flattener) checkHeader(hdr *tar.Header) error {
	l := &fl.limits
	if int64(fl.entries) > l.MaxEntries {
		return &LimitError{Limit: LimitEntries, Max: l.MaxEntries, Got: int64(fl.entries)}
	}
	if len(hdr.Name) > MaxPath || len(hdr.Linkname) > MaxPath {
		return fmt.Errorf("name or link target longer than %d bytes: %w", MaxPath, ErrMalformed)
	}
	if hdr.Typeflag != tar.TypeReg && hdr.Typeflag != '\x00' {
		return nil
	}
	if hdr.Size > l.MaxFileSize {
		return &LimitError{Limit: LimitFileSize, Max: l.MaxFileSize, Got: hdr.Size}
	}
	if hdr.Size > 0 && fl.off+hdr.Size > l.MaxSize {
		return &LimitError{Limit: LimitSize, Max: l.MaxSize, Got: fl.off + hdr.Size}
	}
	return nil
}

// xattrs returns the extended attributes of hdr that the policy keeps,
// each value checked against the limits before it is copied.
func (fl *Flattener) xattrs(hdr *tar.Header) (map[string][]byte, error) {
	var m map[string][]byte
	for k, v := range hdr.PAXRecords {
		name, ok := strings.CutPrefix(k, xattrPAX)
		if !ok || name == "" {
			continue
		}
		if int64(len(v)) > fl.limits.MaxXattrValue {
			return nil, &LimitError{Limit: LimitXattrValue, Max: fl.limits.MaxXattrValue, Got: int64(len(v))}
		}
		if !fl.policy.keepXattr(name) {
			fl.stats.DroppedXattrs++
			continue
		}
		fl.xattrBytes += int64(len(name) + len(v))
		if fl.xattrBytes > fl.limits.MaxXattrTotal {
			return nil, &LimitError{Limit: LimitXattrTotal, Max: fl.limits.MaxXattrTotal, Got: fl.xattrBytes}
		}
		if m == nil {
			m = make(map[string][]byte)
		}
		m[name] = []byte(v)
	}
	return m, nil
}
