//go:build amd64 && !purego

package crypt

import (
	"bytes"
	"crypto/aes"
	"crypto/rand"
	"encoding/binary"
	"testing"

	"golang.org/x/sys/cpu"
)

// TestRoundKeysMatchCryptoAES checks the AES-NI paths' key expansion and
// assembly (eight blocks on XMM registers; 32 on ZMM with the tweaks
// computed by vector instructions, where the CPU has AVX-512 VAES) against
// XTS done block by block with crypto/aes, encrypting and decrypting, for
// AES-128 and AES-256, from random first tweaks.
func TestRoundKeysMatchCryptoAES(t *testing.T) {
	if !cpu.X86.HasAES {
		t.Skip("CPU without AES-NI: the assembly is never used")
	}
	for _, keyLen := range []int{16, 32} {
		for _, vaes := range []bool{false, true} {
			if vaes && !newRoundKeys(make([]byte, keyLen)).vaes {
				t.Logf("CPU without AVX-512 VAES and VPCLMULQDQ: that path untested")
				continue
			}
			key := make([]byte, keyLen)
			rand.Read(key)
			ref, err := aes.NewCipher(key)
			if err != nil {
				t.Fatal(err)
			}
			k := expandKey(key)
			k.vaes = vaes
			for _, n := range []int{512, 4096} {
				src := make([]byte, n)
				rand.Read(src)
				var seed [16]byte
				rand.Read(seed[:])
				lo0, hi0 := binary.LittleEndian.Uint64(seed[:8]), binary.LittleEndian.Uint64(seed[8:])
				want := make([]byte, n)
				lo, hi := lo0, hi0
				for i := 0; i < n; i += 16 {
					var x [16]byte
					binary.LittleEndian.PutUint64(x[:8], binary.LittleEndian.Uint64(src[i:])^lo)
					binary.LittleEndian.PutUint64(x[8:], binary.LittleEndian.Uint64(src[i+8:])^hi)
					ref.Encrypt(x[:], x[:])
					binary.LittleEndian.PutUint64(want[i:], binary.LittleEndian.Uint64(x[:8])^lo)
					binary.LittleEndian.PutUint64(want[i+8:], binary.LittleEndian.Uint64(x[8:])^hi)
					lo, hi = xtsDouble(lo, hi)
				}
				got := make([]byte, n)
				k.xts(got, src, lo0, hi0, false)
				if !bytes.Equal(got, want) {
					t.Fatalf("AES-%d, VAES %v, %d bytes: encryption differs from crypto/aes", 8*keyLen, vaes, n)
				}
				k.xts(got, got, lo0, hi0, true)
				if !bytes.Equal(got, src) {
					t.Fatalf("AES-%d, VAES %v, %d bytes: decryption does not invert", 8*keyLen, vaes, n)
				}
			}
		}
	}
}
