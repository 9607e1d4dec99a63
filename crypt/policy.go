package crypt

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
)

// Policy is what a header written by someone else may ask for, checked by
// OpenWithPolicy before any KDF runs. Open alone accepts every header
// cryptsetup accepts, within cryptsetup's own limits (argon2 up to 4 GiB,
// up to 2^32-1 iterations): right for a disk the caller owns, not for one
// an adversary controls, like the enclave's run volume, whose header the
// parent writes. There, a header asking for 4 GiB of argon2 exhausts the
// enclave's memory, and one whose sector size, data offset or size was
// changed opens with the right key and serves garbage.
//
// Every field is a requirement or an upper bound: a zero field allows
// nothing (a zero Policy refuses every header). Start from EnclavePolicy.
type Policy struct {
	// Cipher is the one cipher allowed for the data segment and the
	// keyslot areas.
	Cipher string
	// KeySizes are the allowed volume key lengths in bytes (every
	// keyslot's, and its area key's).
	KeySizes []int
	// SectorSize, DataOffset and MetadataSize must match exactly;
	// DataSize too, where 0 requires a "dynamic" segment.
	SectorSize   int
	DataOffset   int64
	DataSize     int64
	MetadataSize int64
	// MaxKeyslots and MaxTokens bound how many the header holds. Every
	// keyslot costs a KDF run when the key is wrong.
	MaxKeyslots, MaxTokens int
	// TokenTypes, when not nil, lists the token types allowed.
	TokenTypes []string
	// Hashes are the hashes allowed for the anti-forensic splitter,
	// PBKDF2 keyslots and digests.
	Hashes []string
	// MinDigestSize is the shortest volume key digest allowed, in bytes;
	// MaxDigestIterations bounds its PBKDF2 cost.
	MinDigestSize       int
	MaxDigestIterations uint32
	// KDFs are the keyslot KDFs allowed, and the bounds on their cost:
	// argon2 memory in KiB, threads (lanes) and passes, PBKDF2
	// iterations.
	KDFs                []KDFType
	MaxArgon2Memory     uint32
	MaxArgon2Threads    uint8
	MaxArgon2Time       uint32
	MaxPBKDF2Iterations uint32
}

// Enclave policy bounds. Argon2 memory is the largest that fits an enclave
// with room to spare (cryptsetup's default cap is the same 1 GiB); threads
// are cryptsetup's maximum; the time and iteration bounds are several times
// what cryptsetup's 2-second benchmark picks on current hardware, so a
// passphrase slot added by cryptsetup on the parent still opens.
const (
	enclaveMaxArgon2Memory     = 1 << 20 // KiB: 1 GiB
	enclaveMaxArgon2Time       = 16
	enclaveMaxPBKDF2Iterations = 1 << 23 // about 8.4 million
	enclaveMaxDigestIterations = 1 << 20
	enclaveMaxKeyslots         = 4
	enclaveMaxTokens           = 4
)

// EnclavePolicy is what the enclave accepts for its run volume: exactly
// the layout Format writes by default (aes-xts-plain64 with a 64-byte key,
// 4096-byte sectors, data at 16 MiB to the end of the device, 16 KiB
// header copies), sha256 everywhere, a 32-byte digest, and PBKDF2 or
// argon2id keyslots within bounds: argon2 ≤ 1 GiB, ≤ 4 threads, ≤ 16
// passes; PBKDF2 ≤ 2^23 iterations; digest ≤ 2^20 iterations; at most 4
// keyslots and 4 tokens. Callers adjust fields (a smaller memory bound for
// a small enclave, TokenTypes for their token) on the returned value.
func EnclavePolicy() Policy {
	return Policy{
		Cipher:              "aes-xts-plain64",
		KeySizes:            []int{DefaultKeySize},
		SectorSize:          DefaultSectorSize,
		DataOffset:          DefaultDataOffset,
		MetadataSize:        metadataSize,
		MaxKeyslots:         enclaveMaxKeyslots,
		MaxTokens:           enclaveMaxTokens,
		Hashes:              []string{"sha256"},
		MinDigestSize:       32,
		MaxDigestIterations: enclaveMaxDigestIterations,
		KDFs:                []KDFType{PBKDF2, Argon2id},
		MaxArgon2Memory:     enclaveMaxArgon2Memory,
		MaxArgon2Threads:    maxArgon2Threads,
		MaxArgon2Time:       enclaveMaxArgon2Time,
		MaxPBKDF2Iterations: enclaveMaxPBKDF2Iterations,
	}
}

// PolicyError reports the first thing in a header a Policy does not
// allow. It wraps ErrPolicy.
type PolicyError struct {
	Field string // e.g. "keyslot 0 argon2 memory (KiB)"
	Value string // what the header says
	Bound string // what the policy allows, e.g. "≤ 1048576"
}

func (e *PolicyError) Error() string {
	return fmt.Sprintf("%v: %s is %s, allowed %s", ErrPolicy, e.Field, e.Value, e.Bound)
}

func (e *PolicyError) Unwrap() error { return ErrPolicy }

// Check reports whether the header info describes is within p; the first
// violation is a *PolicyError. It reads only info: no KDF runs.
func (p Policy) Check(info *Info) error {
	refuse := func(field string, value any, bound string) error {
		return &PolicyError{Field: field, Value: fmt.Sprint(value), Bound: bound}
	}
	is := func(v any) string { return "= " + fmt.Sprint(v) }
	in := func(v any) string { return "one of " + fmt.Sprint(v) }
	le := func(v any) string { return "≤ " + fmt.Sprint(v) }

	switch {
	case info.MetadataSize != p.MetadataSize:
		return refuse("metadata size", info.MetadataSize, is(p.MetadataSize))
	case info.Cipher != p.Cipher:
		return refuse("segment cipher", info.Cipher, is(p.Cipher))
	case info.SectorSize != p.SectorSize:
		return refuse("segment sector size", info.SectorSize, is(p.SectorSize))
	case info.Offset != p.DataOffset:
		return refuse("segment offset", info.Offset, is(p.DataOffset))
	case p.DataSize == 0 && !info.Dynamic:
		return refuse("segment size", info.Size, is("dynamic"))
	case p.DataSize != 0 && (info.Dynamic || info.Size != p.DataSize):
		return refuse("segment size", sizeString(info), is(p.DataSize))
	case len(info.Slots) > p.MaxKeyslots:
		return refuse("keyslot count", len(info.Slots), le(p.MaxKeyslots))
	case len(info.Tokens) > p.MaxTokens:
		return refuse("token count", len(info.Tokens), le(p.MaxTokens))
	}
	for _, id := range slices.Sorted(maps.Keys(info.Tokens)) {
		if t := info.Tokens[id].Type; p.TokenTypes != nil && !slices.Contains(p.TokenTypes, t) {
			return refuse("token "+strconv.Itoa(id)+" type", t, in(p.TokenTypes))
		}
	}
	for _, n := range slices.Sorted(maps.Keys(info.Slots)) {
		s := info.Slots[n]
		name := "keyslot " + strconv.Itoa(n) + " "
		k := s.KDF
		switch {
		case !slices.Contains(p.KeySizes, s.KeySize):
			return refuse(name+"key size", s.KeySize, in(p.KeySizes))
		case s.AreaCipher != p.Cipher:
			return refuse(name+"area cipher", s.AreaCipher, is(p.Cipher))
		case !slices.Contains(p.KeySizes, s.AreaKeySize):
			return refuse(name+"area key size", s.AreaKeySize, in(p.KeySizes))
		case !slices.Contains(p.Hashes, s.AFHash):
			return refuse(name+"AF hash", s.AFHash, in(p.Hashes))
		}
		if err := p.checkKDF(name, k); err != nil {
			return err
		}
	}
	for _, n := range slices.Sorted(maps.Keys(info.Digests)) {
		d := info.Digests[n]
		name := "digest " + strconv.Itoa(n) + " "
		switch {
		case !slices.Contains(p.Hashes, d.Hash):
			return refuse(name+"hash", d.Hash, in(p.Hashes))
		case d.Size < p.MinDigestSize:
			return refuse(name+"size (bytes)", d.Size, "≥ "+strconv.Itoa(p.MinDigestSize))
		case d.Iterations > p.MaxDigestIterations:
			return refuse(name+"iterations", d.Iterations, le(p.MaxDigestIterations))
		}
	}
	return nil
}

func sizeString(in *Info) string {
	if in.Dynamic {
		return "dynamic"
	}
	return strconv.FormatInt(in.Size, 10)
}

// OpenWithPolicy is Open for a device whose header someone else controls:
// after validating the header it checks p (a *PolicyError, wrapping
// ErrPolicy, names what is refused) and only then runs any KDF. Nothing is
// allocated for a refused keyslot.
func OpenWithPolicy(ctx context.Context, dev io.ReaderAt, key []byte, p Policy) (*Volume, error) {
	size, known := deviceSize(dev)
	return open(ctx, dev, key, sizeOrUnknown(size, known), false, openConfig{policy: &p})
}

// CheckKDF reports whether a keyslot KDF is within p, as Check does for
// every keyslot of a header. A caller that chooses the KDF of a volume it
// formats checks it first, so it never writes a volume its own policy
// would refuse to open.
func (p Policy) CheckKDF(k KDF) error { return p.checkKDF("keyslot ", k) }

func (p Policy) checkKDF(name string, k KDF) error {
	refuse := func(field string, value any, bound string) error {
		return &PolicyError{Field: name + field, Value: fmt.Sprint(value), Bound: bound}
	}
	in := func(v any) string { return "one of " + fmt.Sprint(v) }
	le := func(v any) string { return "≤ " + fmt.Sprint(v) }
	switch {
	case !slices.Contains(p.KDFs, k.Type):
		return refuse("KDF", k.Type, in(p.KDFs))
	case k.Type == PBKDF2 && !slices.Contains(p.Hashes, k.Hash):
		return refuse("pbkdf2 hash", k.Hash, in(p.Hashes))
	case k.Type == PBKDF2 && k.Iterations > p.MaxPBKDF2Iterations:
		return refuse("pbkdf2 iterations", k.Iterations, le(p.MaxPBKDF2Iterations))
	case k.Type != PBKDF2 && k.Memory > p.MaxArgon2Memory:
		return refuse("argon2 memory (KiB)", k.Memory, le(p.MaxArgon2Memory))
	case k.Type != PBKDF2 && k.Threads > p.MaxArgon2Threads:
		return refuse("argon2 threads", k.Threads, le(p.MaxArgon2Threads))
	case k.Type != PBKDF2 && k.Time > p.MaxArgon2Time:
		return refuse("argon2 time", k.Time, le(p.MaxArgon2Time))
	}
	return nil
}

// CheckedHeader is a LUKS2 header read once from a device and checked
// against a Policy (ReadWithPolicy). Open unlocks that same header: a
// device whose owner serves one header to the check and another to the
// unlock (a hostile NBD server) cannot slip the second past the policy,
// and what a caller learnt from Info (the UUID, a token) is what it opens.
type CheckedHeader struct {
	// Info describes the checked header.
	Info *Info
	h    *header
	dev  io.ReaderAt
}

// ReadWithPolicy reads and validates the header on dev once and checks p
// (a *PolicyError, wrapping ErrPolicy, names what is refused). No KDF runs.
func ReadWithPolicy(ctx context.Context, dev io.ReaderAt, p Policy) (*CheckedHeader, error) {
	h, err := readHeader(ctx, dev)
	if err != nil {
		return nil, err
	}
	in := h.info()
	if err := p.Check(in); err != nil {
		return nil, err
	}
	return &CheckedHeader{Info: in, h: h, dev: dev}, nil
}

// Open tries each keyslot of the checked header with key, reading only the
// keyslot areas from the device, and returns the unlocked volume, as
// OpenWithPolicy would.
func (c *CheckedHeader) Open(ctx context.Context, key []byte) (*Volume, error) {
	if len(key) == 0 {
		return nil, fmt.Errorf("%w: empty key", ErrInvalidArgument)
	}
	size, known := deviceSize(c.dev)
	return c.h.open(ctx, c.dev, key, sizeOrUnknown(size, known), false)
}
