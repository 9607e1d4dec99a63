//go:build amd64 && !purego

package crypt

import (
	"encoding/binary"
	"unsafe"

	"golang.org/x/sys/cpu"
)

// The amd64 SectorCipher path: crypto/aes uses AES-NI too, but through
// cipher.Block one 16-byte block per call, so each block waits out the
// whole latency of its 10 or 14 rounds. XTS blocks within a sector are
// independent once their tweaks are known, so sector_amd64.s runs eight of
// them through AES-NI at once; crypto/aes keeps its round keys private,
// hence the key expansion here (checked against crypto/aes by the tests).

//go:noescape
func xtsEncryptAsm(rk *byte, rounds int, dst, src, tw *byte, groups int)

//go:noescape
func xtsDecryptAsm(rk *byte, rounds int, dst, src, tw *byte, groups int)

//go:noescape
func xtsEncryptVAES(rk *byte, rounds int, dst, src, tw *byte, groups int)

//go:noescape
func xtsDecryptVAES(rk *byte, rounds int, dst, src, tw *byte, groups int)

// roundKeys is an expanded AES key in the byte order AES-NI loads it.
type roundKeys struct {
	enc, dec [15 * 16]byte // rounds+1 keys each; dec for AESDEC
	rounds   int
	vaes     bool // AVX-512 VAES and VPCLMULQDQ: 32 blocks at a time on ZMM
}

// newRoundKeys expands a 16- or 32-byte AES key, or returns nil where the
// CPU has no AES-NI (the caller then uses crypto/aes block by block).
func newRoundKeys(key []byte) *roundKeys {
	if !cpu.X86.HasAES {
		return nil
	}
	k := expandKey(key)
	k.vaes = cpu.X86.HasAVX512F && cpu.X86.HasAVX512BW && cpu.X86.HasAVX512VAES &&
		cpu.X86.HasAVX512VPCLMULQDQ
	return k
}

// expandKey is the FIPS-197 §5.2 key expansion, plus the decryption keys
// of the equivalent inverse cipher (§5.3.5).
func expandKey(key []byte) *roundKeys {
	nk := len(key) / 4
	k := &roundKeys{rounds: nk + 6}
	w := k.enc[:16*(k.rounds+1)]
	copy(w, key)
	rcon := byte(1)
	for i := nk; i < len(w)/4; i++ {
		var t [4]byte
		copy(t[:], w[4*(i-1):])
		switch {
		case i%nk == 0:
			t = [4]byte{aesSbox[t[1]] ^ rcon, aesSbox[t[2]], aesSbox[t[3]], aesSbox[t[0]]}
			rcon = gfDouble(rcon)
		case nk > 6 && i%nk == 4:
			t = [4]byte{aesSbox[t[0]], aesSbox[t[1]], aesSbox[t[2]], aesSbox[t[3]]}
		}
		for j := range t {
			w[4*i+j] = w[4*(i-nk)+j] ^ t[j]
		}
	}
	n := k.rounds
	copy(k.dec[:16], w[16*n:])
	for r := 1; r < n; r++ {
		invMixColumns(k.dec[16*r:16*r+16], w[16*(n-r):16*(n-r)+16])
	}
	copy(k.dec[16*n:16*n+16], w[:16])
	return k
}

func gfDouble(b byte) byte { return b<<1 ^ 0x1b*(b>>7) }

func gfMul(a, b byte) byte {
	var p byte
	for ; b != 0; b >>= 1 {
		p ^= a * (b & 1)
		a = gfDouble(a)
	}
	return p
}

func invMixColumns(dst, src []byte) {
	for c := 0; c < 16; c += 4 {
		a0, a1, a2, a3 := src[c], src[c+1], src[c+2], src[c+3]
		dst[c] = gfMul(a0, 14) ^ gfMul(a1, 11) ^ gfMul(a2, 13) ^ gfMul(a3, 9)
		dst[c+1] = gfMul(a0, 9) ^ gfMul(a1, 14) ^ gfMul(a2, 11) ^ gfMul(a3, 13)
		dst[c+2] = gfMul(a0, 13) ^ gfMul(a1, 9) ^ gfMul(a2, 14) ^ gfMul(a3, 11)
		dst[c+3] = gfMul(a0, 11) ^ gfMul(a1, 13) ^ gfMul(a2, 9) ^ gfMul(a3, 14)
	}
}

// xts transforms one sector (len(src) a multiple of 512; dst at least as
// long) whose first tweak is (lo, hi), little-endian halves: block i
// becomes AES±(src[i] ^ T·α^i) ^ T·α^i.
func (k *roundKeys) xts(dst, src []byte, lo, hi uint64, decrypt bool) {
	if len(src) == 0 {
		return
	}
	_ = dst[len(src)-1]
	d, s := unsafe.SliceData(dst), unsafe.SliceData(src)
	if k.vaes {
		var tw [64]byte // the first four tweaks; the assembly derives the rest
		putTweaks(tw[:], lo, hi)
		if decrypt {
			xtsDecryptVAES(&k.dec[0], k.rounds, d, s, &tw[0], len(src)/512)
		} else {
			xtsEncryptVAES(&k.enc[0], k.rounds, d, s, &tw[0], len(src)/512)
		}
		return
	}
	var tw [4096]byte // every block's tweak; 4096 is the largest sector
	putTweaks(tw[:len(src)], lo, hi)
	if decrypt {
		xtsDecryptAsm(&k.dec[0], k.rounds, d, s, &tw[0], len(src)/128)
	} else {
		xtsEncryptAsm(&k.enc[0], k.rounds, d, s, &tw[0], len(src)/128)
	}
}

// putTweaks fills tw with T, Tα, Tα², … where T is (lo, hi), each as 16
// little-endian bytes.
func putTweaks(tw []byte, lo, hi uint64) {
	for i := 0; i+16 <= len(tw); i += 16 {
		binary.LittleEndian.PutUint64(tw[i:], lo)
		binary.LittleEndian.PutUint64(tw[i+8:], hi)
		lo, hi = xtsDouble(lo, hi)
	}
}

// aesSbox is the AES S-box (FIPS-197 Figure 7).
var aesSbox = [256]byte{
	0x63, 0x7c, 0x77, 0x7b, 0xf2, 0x6b, 0x6f, 0xc5, 0x30, 0x01, 0x67, 0x2b, 0xfe, 0xd7, 0xab, 0x76,
	0xca, 0x82, 0xc9, 0x7d, 0xfa, 0x59, 0x47, 0xf0, 0xad, 0xd4, 0xa2, 0xaf, 0x9c, 0xa4, 0x72, 0xc0,
	0xb7, 0xfd, 0x93, 0x26, 0x36, 0x3f, 0xf7, 0xcc, 0x34, 0xa5, 0xe5, 0xf1, 0x71, 0xd8, 0x31, 0x15,
	0x04, 0xc7, 0x23, 0xc3, 0x18, 0x96, 0x05, 0x9a, 0x07, 0x12, 0x80, 0xe2, 0xeb, 0x27, 0xb2, 0x75,
	0x09, 0x83, 0x2c, 0x1a, 0x1b, 0x6e, 0x5a, 0xa0, 0x52, 0x3b, 0xd6, 0xb3, 0x29, 0xe3, 0x2f, 0x84,
	0x53, 0xd1, 0x00, 0xed, 0x20, 0xfc, 0xb1, 0x5b, 0x6a, 0xcb, 0xbe, 0x39, 0x4a, 0x4c, 0x58, 0xcf,
	0xd0, 0xef, 0xaa, 0xfb, 0x43, 0x4d, 0x33, 0x85, 0x45, 0xf9, 0x02, 0x7f, 0x50, 0x3c, 0x9f, 0xa8,
	0x51, 0xa3, 0x40, 0x8f, 0x92, 0x9d, 0x38, 0xf5, 0xbc, 0xb6, 0xda, 0x21, 0x10, 0xff, 0xf3, 0xd2,
	0xcd, 0x0c, 0x13, 0xec, 0x5f, 0x97, 0x44, 0x17, 0xc4, 0xa7, 0x7e, 0x3d, 0x64, 0x5d, 0x19, 0x73,
	0x60, 0x81, 0x4f, 0xdc, 0x22, 0x2a, 0x90, 0x88, 0x46, 0xee, 0xb8, 0x14, 0xde, 0x5e, 0x0b, 0xdb,
	0xe0, 0x32, 0x3a, 0x0a, 0x49, 0x06, 0x24, 0x5c, 0xc2, 0xd3, 0xac, 0x62, 0x91, 0x95, 0xe4, 0x79,
	0xe7, 0xc8, 0x37, 0x6d, 0x8d, 0xd5, 0x4e, 0xa9, 0x6c, 0x56, 0xf4, 0xea, 0x65, 0x7a, 0xae, 0x08,
	0xba, 0x78, 0x25, 0x2e, 0x1c, 0xa6, 0xb4, 0xc6, 0xe8, 0xdd, 0x74, 0x1f, 0x4b, 0xbd, 0x8b, 0x8a,
	0x70, 0x3e, 0xb5, 0x66, 0x48, 0x03, 0xf6, 0x0e, 0x61, 0x35, 0x57, 0xb9, 0x86, 0xc1, 0x1d, 0x9e,
	0xe1, 0xf8, 0x98, 0x11, 0x69, 0xd9, 0x8e, 0x94, 0x9b, 0x1e, 0x87, 0xe9, 0xce, 0x55, 0x28, 0xdf,
	0x8c, 0xa1, 0x89, 0x0d, 0xbf, 0xe6, 0x42, 0x68, 0x41, 0x99, 0x2d, 0x0f, 0xb0, 0x54, 0xbb, 0x16,
}
