package crypt

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/binary"
	"hash"
	"strconv"
)

// Binary header layout (LUKS2 On-Disk Format Specification, section 2).
const (
	binHeaderSize = 4096

	offMagic     = 0
	offVersion   = 6
	offHdrSize   = 8
	offSeqID     = 16
	offLabel     = 24
	offCsumAlg   = 72
	offSalt      = 104
	offUUID      = 168
	offSubsystem = 208
	offHdrOffset = 256
	offCsum      = 448

	labelLen     = 48
	csumAlgLen   = 32
	saltLen      = 64
	uuidLen      = 40
	subsystemLen = 48
	csumLen      = 64
)

var (
	magicPrimary   = []byte{'L', 'U', 'K', 'S', 0xba, 0xbe}
	magicSecondary = []byte{'S', 'K', 'U', 'L', 0xba, 0xbe}
)

// secondaryOffsets are the places a secondary header may live: one per
// permitted metadata area size (16 KiB .. 4 MiB), as cryptsetup scans them.
var secondaryOffsets = []int64{
	0x4000, 0x8000, 0x10000, 0x20000, 0x40000, 0x80000, 0x100000, 0x200000, 0x400000,
}

// validHdrSize reports whether n is a metadata area size LUKS2 allows.
func validHdrSize(n uint64) bool {
	for _, o := range secondaryOffsets {
		if uint64(o) == n {
			return true
		}
	}
	return false
}

// binaryHeader is the decoded fixed-size part of a LUKS2 header.
type binaryHeader struct {
	secondary bool
	version   uint16
	hdrSize   uint64 // binary header + JSON area
	seqID     uint64
	label     string
	csumAlg   string
	salt      [saltLen]byte
	uuid      string
	subsystem string
	hdrOffset uint64
	csum      [csumLen]byte
}

func cString(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

// parseBinaryHeader decodes b (at least binHeaderSize bytes). It checks only
// what needs no JSON: magic, version and metadata size.
func parseBinaryHeader(b []byte) (*binaryHeader, error) {
	if len(b) < binHeaderSize {
		return nil, ErrTruncated
	}
	h := &binaryHeader{}
	switch {
	case bytes.Equal(b[offMagic:offMagic+6], magicPrimary):
	case bytes.Equal(b[offMagic:offMagic+6], magicSecondary):
		h.secondary = true
	default:
		return nil, ErrNotLUKS
	}
	h.version = binary.BigEndian.Uint16(b[offVersion:])
	if h.version != 2 {
		return nil, unsupportedVersion(h.version)
	}
	h.hdrSize = binary.BigEndian.Uint64(b[offHdrSize:])
	if !validHdrSize(h.hdrSize) {
		return nil, corruptf("metadata size %d is not a LUKS2 size", h.hdrSize)
	}
	h.seqID = binary.BigEndian.Uint64(b[offSeqID:])
	h.label = cString(b[offLabel : offLabel+labelLen])
	h.csumAlg = cString(b[offCsumAlg : offCsumAlg+csumAlgLen])
	copy(h.salt[:], b[offSalt:offSalt+saltLen])
	h.uuid = cString(b[offUUID : offUUID+uuidLen])
	h.subsystem = cString(b[offSubsystem : offSubsystem+subsystemLen])
	h.hdrOffset = binary.BigEndian.Uint64(b[offHdrOffset:])
	copy(h.csum[:], b[offCsum:offCsum+csumLen])
	return h, nil
}

func unsupportedVersion(v uint16) error {
	if v == 1 {
		return errLUKS1
	}
	return &versionError{v}
}

var errLUKS1 = &versionError{1}

type versionError struct{ v uint16 }

func (e *versionError) Error() string {
	if e.v == 1 {
		return "LUKS1 header: only LUKS2 is supported (cryptsetup convert --type luks2)"
	}
	return "LUKS version " + strconv.FormatUint(uint64(e.v), 10) + ": only LUKS2 is supported"
}

func (e *versionError) Unwrap() error { return ErrUnsupportedVersion }

// marshal encodes h into a binHeaderSize buffer with a zero checksum.
func (h *binaryHeader) marshal() []byte {
	b := make([]byte, binHeaderSize)
	if h.secondary {
		copy(b[offMagic:], magicSecondary)
	} else {
		copy(b[offMagic:], magicPrimary)
	}
	binary.BigEndian.PutUint16(b[offVersion:], 2)
	binary.BigEndian.PutUint64(b[offHdrSize:], h.hdrSize)
	binary.BigEndian.PutUint64(b[offSeqID:], h.seqID)
	copy(b[offLabel:offLabel+labelLen-1], h.label)
	copy(b[offCsumAlg:offCsumAlg+csumAlgLen-1], h.csumAlg)
	copy(b[offSalt:], h.salt[:])
	copy(b[offUUID:offUUID+uuidLen-1], h.uuid)
	copy(b[offSubsystem:offSubsystem+subsystemLen-1], h.subsystem)
	binary.BigEndian.PutUint64(b[offHdrOffset:], h.hdrOffset)
	return b
}

// checksumHash returns the hash a header's checksum_alg names.
func checksumHash(alg string) (func() hash.Hash, bool) {
	switch alg {
	case "sha256":
		return sha256.New, true
	case "sha1":
		return sha1.New, true
	case "sha512":
		return sha512.New, true
	}
	return nil, false
}

// headerChecksum computes the checksum of a whole metadata area (binary
// header followed by the JSON area) with the checksum field taken as zero.
func headerChecksum(newHash func() hash.Hash, area []byte) []byte {
	d := newHash()
	d.Write(area[:offCsum])
	var zero [csumLen]byte
	d.Write(zero[:])
	d.Write(area[offCsum+csumLen:])
	return d.Sum(nil)
}

// verifyChecksum checks the checksum of a whole metadata area.
func verifyChecksum(h *binaryHeader, area []byte) error {
	newHash, ok := checksumHash(h.csumAlg)
	if !ok {
		return unsupportedf("checksum algorithm %q", h.csumAlg)
	}
	sum := headerChecksum(newHash, area)
	if subtle.ConstantTimeCompare(sum, h.csum[:len(sum)]) != 1 {
		return corruptf("checksum mismatch")
	}
	return nil
}

// sealArea fills in the checksum of a whole metadata area in place.
func sealArea(area []byte) {
	sum := headerChecksum(sha256.New, area)
	clear(area[offCsum : offCsum+csumLen])
	copy(area[offCsum:], sum)
}
