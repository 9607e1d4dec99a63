package verity

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"strings"
)

// superblockMagic is the signature of a verity superblock.
var superblockMagic = [8]byte{'v', 'e', 'r', 'i', 't', 'y', 0, 0}

// A Superblock is veritysetup's on-disk verity header (struct verity_sb in
// cryptsetup's lib/verity/verity.c), 512 bytes, little-endian.
type Superblock struct {
	Version       uint32 // superblock version, 1
	HashType      uint32 // 1 for the normal format
	UUID          [16]byte
	Algorithm     string
	DataBlockSize uint32
	HashBlockSize uint32
	DataBlocks    uint64
	Salt          []byte
}

// superblock field offsets.
const (
	sbVersion   = 8
	sbHashType  = 12
	sbUUID      = 16
	sbAlgorithm = 32
	sbDBS       = 64
	sbHBS       = 68
	sbBlocks    = 72
	sbSaltSize  = 80
	sbSalt      = 88
	sbAlgLen    = 32
)

// MarshalBinary encodes the superblock in its 512-byte on-disk form.
func (sb *Superblock) MarshalBinary() ([]byte, error) {
	if len(sb.Algorithm) >= sbAlgLen {
		return nil, fmt.Errorf("%w: algorithm name %q too long", ErrInvalidParams, sb.Algorithm)
	}
	if len(sb.Salt) > maxSaltSize {
		return nil, fmt.Errorf("%w: salt of %d bytes is longer than %d", ErrInvalidParams, len(sb.Salt), maxSaltSize)
	}
	b := make([]byte, SuperblockSize)
	copy(b, superblockMagic[:])
	le := binary.LittleEndian
	le.PutUint32(b[sbVersion:], sb.Version)
	le.PutUint32(b[sbHashType:], sb.HashType)
	copy(b[sbUUID:], sb.UUID[:])
	copy(b[sbAlgorithm:], sb.Algorithm)
	le.PutUint32(b[sbDBS:], sb.DataBlockSize)
	le.PutUint32(b[sbHBS:], sb.HashBlockSize)
	le.PutUint64(b[sbBlocks:], sb.DataBlocks)
	le.PutUint16(b[sbSaltSize:], uint16(len(sb.Salt)))
	copy(b[sbSalt:], sb.Salt)
	return b, nil
}

// UnmarshalBinary decodes and validates a superblock. It checks what
// veritysetup checks: the signature, version 1, hash type 1, a salt that
// fits, block sizes that are powers of two, and a NUL-terminated algorithm
// name; it does not check that the algorithm is one this package knows.
func (sb *Superblock) UnmarshalBinary(b []byte) error {
	if len(b) < SuperblockSize {
		return fmt.Errorf("%w: %d bytes, want %d", ErrBadSuperblock, len(b), SuperblockSize)
	}
	if !bytes.Equal(b[:8], superblockMagic[:]) {
		return fmt.Errorf("%w: no verity signature", ErrBadSuperblock)
	}
	le := binary.LittleEndian
	v := Superblock{
		Version:       le.Uint32(b[sbVersion:]),
		HashType:      le.Uint32(b[sbHashType:]),
		DataBlockSize: le.Uint32(b[sbDBS:]),
		HashBlockSize: le.Uint32(b[sbHBS:]),
		DataBlocks:    le.Uint64(b[sbBlocks:]),
	}
	copy(v.UUID[:], b[sbUUID:])
	if v.Version != 1 {
		return fmt.Errorf("%w: superblock version %d, want 1", ErrBadSuperblock, v.Version)
	}
	if v.HashType != 1 {
		return fmt.Errorf("%w: hash type %d, only 1 is supported", ErrBadSuperblock, v.HashType)
	}
	alg := b[sbAlgorithm : sbAlgorithm+sbAlgLen]
	n := bytes.IndexByte(alg, 0)
	if n <= 0 {
		return fmt.Errorf("%w: algorithm name is empty or not terminated", ErrBadSuperblock)
	}
	v.Algorithm = strings.ToLower(string(alg[:n]))
	saltSize := int(le.Uint16(b[sbSaltSize:]))
	if saltSize > maxSaltSize {
		return fmt.Errorf("%w: salt size %d larger than %d", ErrBadSuperblock, saltSize, maxSaltSize)
	}
	v.Salt = append([]byte{}, b[sbSalt:sbSalt+saltSize]...)
	if !isBlockSize(v.DataBlockSize) || !isBlockSize(v.HashBlockSize) {
		return fmt.Errorf("%w: block sizes %d/%d are not powers of two between 512 and 1 MiB", ErrBadSuperblock, v.DataBlockSize, v.HashBlockSize)
	}
	if v.DataBlocks == 0 || v.DataBlocks > (1<<63)/uint64(v.DataBlockSize) {
		return fmt.Errorf("%w: %d data blocks", ErrBadSuperblock, v.DataBlocks)
	}
	*sb = v
	return nil
}

// UUIDString formats the UUID as veritysetup prints it.
func (sb *Superblock) UUIDString() string { return formatUUID(sb.UUID) }

// ReadSuperblock reads and validates the superblock at offset of r.
func ReadSuperblock(r io.ReaderAt, offset uint64) (*Superblock, error) {
	b := make([]byte, SuperblockSize)
	if _, err := r.ReadAt(b, int64(offset)); err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return nil, fmt.Errorf("%w: no superblock at offset %d: %w", ErrTruncated, offset, err)
		}
		return nil, fmt.Errorf("verity: reading superblock at offset %d: %w", offset, err)
	}
	sb := new(Superblock)
	if err := sb.UnmarshalBinary(b); err != nil {
		return nil, err
	}
	return sb, nil
}

// Params returns the tree parameters the superblock records, located at
// hashOffset, with the given root hash.
func (sb *Superblock) Params(hashOffset uint64, rootHash []byte) *Params {
	return &Params{
		HashType:      sb.HashType,
		Algorithm:     sb.Algorithm,
		DataBlockSize: sb.DataBlockSize,
		HashBlockSize: sb.HashBlockSize,
		DataBlocks:    sb.DataBlocks,
		Salt:          sb.Salt,
		HashOffset:    hashOffset,
		Superblock:    true,
		UUID:          sb.UUIDString(),
		RootHash:      rootHash,
	}
}

func formatUUID(u [16]byte) string {
	h := hex.EncodeToString(u[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// parseUUID accepts the canonical 36-character form.
func parseUUID(s string) ([16]byte, error) {
	var u [16]byte
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return u, fmt.Errorf("%w: UUID %q is not of the form xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx", ErrInvalidParams, s)
	}
	h := s[0:8] + s[9:13] + s[14:18] + s[19:23] + s[24:36]
	if _, err := hex.Decode(u[:], []byte(h)); err != nil {
		return u, fmt.Errorf("%w: UUID %q: %v", ErrInvalidParams, s, err)
	}
	return u, nil
}
