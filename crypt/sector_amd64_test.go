//go:build amd64 && !purego

package crypt

import (
	"bytes"
	"crypto/aes"
	"crypto/rand"
	"testing"

	"golang.org/x/sys/cpu"
)

// TestRoundKeysMatchCryptoAES checks the AES-NI path's key expansion and
// eight-way assembly against crypto/aes: with all-zero tweaks xtsBlocks is
// plain AES block by block, encrypting and decrypting.
func TestRoundKeysMatchCryptoAES(t *testing.T) {
	if !cpu.X86.HasAES {
		t.Skip("CPU without AES-NI: the assembly is never used")
	}
	for _, keyLen := range []int{16, 32} {
		key := make([]byte, keyLen)
		rand.Read(key)
		ref, err := aes.NewCipher(key)
		if err != nil {
			t.Fatal(err)
		}
		k := expandKey(key)
		src := make([]byte, 512)
		rand.Read(src)
		tw := make([]byte, len(src))
		want := make([]byte, len(src))
		for i := 0; i < len(src); i += 16 {
			ref.Encrypt(want[i:i+16], src[i:i+16])
		}
		got := make([]byte, len(src))
		k.xtsBlocks(got, src, tw, false)
		if !bytes.Equal(got, want) {
			t.Fatalf("AES-%d: encryption differs from crypto/aes", 8*keyLen)
		}
		k.xtsBlocks(got, got, tw, true)
		if !bytes.Equal(got, src) {
			t.Fatalf("AES-%d: decryption does not invert", 8*keyLen)
		}
	}
}
