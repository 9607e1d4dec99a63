package crypt

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"fmt"
)

// SectorCipher encrypts and decrypts data-segment sectors in userspace,
// bit-for-bit as dm-crypt does with the table Volume.Params renders:
// aes-xts-plain64 over SectorSize-byte sectors, where the IV of the sector
// starting at segment byte offset off is ivTweak + off/512 as a
// little-endian 64-bit number (dm-crypt counts IVs in 512-byte units unless
// the table says iv_large_sectors, which cryptsetup never does for LUKS2).
//
// It is XTS (IEEE 1619) written out over 64-bit words rather than
// golang.org/x/crypto/xts, which works byte by byte and runs several times
// slower on whole 4 KiB sectors. On amd64 with AES-NI the data blocks of a
// sector go through AES several at a time (sector_amd64.s): 32 on ZMM
// registers with AVX-512 VAES, tweaks computed by vector instructions;
// else eight on XMM registers after the tweaks are computed in one pass.
// Elsewhere crypto/aes does them one by one. The tests hold every path to
// the IEEE vectors, a from-the-definition reference, x/crypto/xts and
// cryptsetup's own userspace encryption.
type SectorCipher struct {
	k1, k2     cipher.Block
	bulk       *roundKeys // k1 expanded for AES-NI; nil: use k1 block by block
	sectorSize int
	ivTweak    uint64
}

// NewSectorCipher returns a SectorCipher for an aes-xts-plain64 volume key
// (32 or 64 bytes).
func NewSectorCipher(key []byte, sectorSize int, ivTweak uint64) (*SectorCipher, error) {
	switch sectorSize {
	case 512, 1024, 2048, 4096:
	default:
		return nil, fmt.Errorf("%w: sector size %d", ErrInvalidArgument, sectorSize)
	}
	if len(key) != 32 && len(key) != 64 {
		return nil, fmt.Errorf("%w: aes-xts key of %d bytes (want 32 or 64)", ErrInvalidArgument, len(key))
	}
	k1, err := aes.NewCipher(key[:len(key)/2])
	if err != nil {
		return nil, fmt.Errorf("aes-xts-plain64: %w", err)
	}
	k2, err := aes.NewCipher(key[len(key)/2:])
	if err != nil {
		return nil, fmt.Errorf("aes-xts-plain64: %w", err)
	}
	return &SectorCipher{k1: k1, k2: k2, bulk: newRoundKeys(key[:len(key)/2]),
		sectorSize: sectorSize, ivTweak: ivTweak}, nil
}

// SectorSize is the encryption unit in bytes.
func (s *SectorCipher) SectorSize() int { return s.sectorSize }

// IV returns the plain64 IV number of the sector at byte offset off within
// the segment.
func (s *SectorCipher) IV(off int64) uint64 { return s.ivTweak + uint64(off)/512 }

func (s *SectorCipher) check(dst, src []byte, off int64) error {
	if len(dst) < len(src) {
		return fmt.Errorf("%w: dst shorter than src", ErrInvalidArgument)
	}
	if off < 0 || off%int64(s.sectorSize) != 0 || len(src)%s.sectorSize != 0 {
		return fmt.Errorf("%w: offset %d and length %d must be multiples of the %d-byte sector",
			ErrInvalidArgument, off, len(src), s.sectorSize)
	}
	return nil
}

// Encrypt encrypts src, which starts at byte offset off of the segment
// (offsets relative to the data offset), into dst. dst and src may be the
// same slice; off and len(src) must be multiples of the sector size.
func (s *SectorCipher) Encrypt(dst, src []byte, off int64) error {
	if err := s.check(dst, src, off); err != nil {
		return err
	}
	for i := 0; i < len(src); i += s.sectorSize {
		s.xts(dst[i:i+s.sectorSize], src[i:i+s.sectorSize], s.IV(off+int64(i)), false)
	}
	return nil
}

// Decrypt is the inverse of Encrypt.
func (s *SectorCipher) Decrypt(dst, src []byte, off int64) error {
	if err := s.check(dst, src, off); err != nil {
		return err
	}
	for i := 0; i < len(src); i += s.sectorSize {
		s.xts(dst[i:i+s.sectorSize], src[i:i+s.sectorSize], s.IV(off+int64(i)), true)
	}
	return nil
}

// xts transforms one sector: T = AES(k2, le128(iv)), then for each 16-byte
// block out = AES±(k1, in ^ T) ^ T and T = T·α in GF(2^128).
func (s *SectorCipher) xts(dst, src []byte, iv uint64, decrypt bool) {
	var t [16]byte
	binary.LittleEndian.PutUint64(t[:8], iv)
	s.k2.Encrypt(t[:], t[:])
	lo := binary.LittleEndian.Uint64(t[:8])
	hi := binary.LittleEndian.Uint64(t[8:])
	if s.bulk != nil {
		s.bulk.xts(dst, src, lo, hi, decrypt)
		return
	}
	f := s.k1.Encrypt
	if decrypt {
		f = s.k1.Decrypt
	}
	var x [16]byte
	for i := 0; i < len(src); i += 16 {
		binary.LittleEndian.PutUint64(x[:8], binary.LittleEndian.Uint64(src[i:])^lo)
		binary.LittleEndian.PutUint64(x[8:], binary.LittleEndian.Uint64(src[i+8:])^hi)
		f(x[:], x[:])
		binary.LittleEndian.PutUint64(dst[i:], binary.LittleEndian.Uint64(x[:8])^lo)
		binary.LittleEndian.PutUint64(dst[i+8:], binary.LittleEndian.Uint64(x[8:])^hi)
		lo, hi = xtsDouble(lo, hi)
	}
}

// xtsDouble multiplies the tweak (lo, hi: its little-endian halves) by α
// in GF(2^128) modulo x^128 + x^7 + x^2 + x + 1.
func xtsDouble(lo, hi uint64) (uint64, uint64) {
	carry := hi >> 63
	return lo<<1 ^ 0x87*carry, hi<<1 | lo>>63
}
