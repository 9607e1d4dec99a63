package crypt

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"testing"
)

func TestAFRoundTrip(t *testing.T) {
	for _, h := range []string{"sha1", "sha256", "sha512"} {
		for _, n := range []int{16, 32, 64, 100} {
			for _, stripes := range []int{1, 2, 4000} {
				newHash, _ := hashByName(h)
				key := make([]byte, n)
				rand.Read(key)
				m, err := afSplit(rand.Reader, newHash, key, stripes)
				if err != nil {
					t.Fatal(err)
				}
				if len(m) != n*stripes {
					t.Fatalf("split length %d, want %d", len(m), n*stripes)
				}
				if got := afMerge(newHash, m, n, stripes); !bytes.Equal(got, key) {
					t.Fatalf("%s key %d stripes %d: merge != key", h, n, stripes)
				}
				if stripes > 1 {
					m[0] ^= 1
					if bytes.Equal(afMerge(newHash, m, n, stripes), key) {
						t.Fatalf("%s: flipping a bit of stripe 0 did not change the key", h)
					}
				}
			}
		}
	}
}

// TestDiffuse pins the diffusion to its definition: piece i of the block
// becomes sha256(be32(i) || piece), the last piece truncated.
func TestDiffuse(t *testing.T) {
	block := make([]byte, 40) // a full 32-byte piece and an 8-byte tail
	for i := range block {
		block[i] = byte(i)
	}
	want := make([]byte, 0, 40)
	for i, piece := range [][]byte{block[:32], block[32:]} {
		var iv [4]byte
		binary.BigEndian.PutUint32(iv[:], uint32(i))
		sum := sha256.Sum256(append(iv[:], piece...))
		want = append(want, sum[:len(piece)]...)
	}
	diffuse(sha256.New, block)
	if !bytes.Equal(block, want) {
		t.Fatalf("diffuse = %x\nwant      %x", block, want)
	}
}
