package crypt

import (
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"fmt"
	"hash"
	"io"
)

// hashByName maps LUKS2 hash names to constructors.
func hashByName(name string) (func() hash.Hash, bool) {
	switch name {
	case "sha1":
		return sha1.New, true
	case "sha256":
		return sha256.New, true
	case "sha384":
		return sha512.New384, true
	case "sha512":
		return sha512.New, true
	}
	return nil, false
}

// diffuse is the LUKS anti-forensic diffusion: the block is cut into
// digest-sized pieces and piece i is replaced by H(be32(i) || piece),
// truncated to the piece's length.
func diffuse(newHash func() hash.Hash, block []byte) {
	h := newHash()
	ds := h.Size()
	var iv [4]byte
	for i, off := 0, 0; off < len(block); i, off = i+1, off+ds {
		end := min(off+ds, len(block))
		h.Reset()
		binary.BigEndian.PutUint32(iv[:], uint32(i))
		h.Write(iv[:])
		h.Write(block[off:end])
		copy(block[off:end], h.Sum(nil))
	}
}

// afSplit spreads key over stripes blocks (LUKS1 AF splitter): all blocks
// but the last are random; the last is chosen so afMerge yields key.
func afSplit(rand io.Reader, newHash func() hash.Hash, key []byte, stripes int) ([]byte, error) {
	n := len(key)
	out := make([]byte, n*stripes)
	if _, err := io.ReadFull(rand, out[:n*(stripes-1)]); err != nil {
		return nil, fmt.Errorf("AF split: %w", err)
	}
	d := make([]byte, n)
	for i := 0; i < stripes-1; i++ {
		xorInto(d, out[i*n:(i+1)*n])
		diffuse(newHash, d)
	}
	last := out[(stripes-1)*n:]
	for i := range last {
		last[i] = d[i] ^ key[i]
	}
	clear(d)
	return out, nil
}

// afMerge recovers a keyLen-byte key from split material.
func afMerge(newHash func() hash.Hash, material []byte, keyLen, stripes int) []byte {
	d := make([]byte, keyLen)
	for i := 0; i < stripes-1; i++ {
		xorInto(d, material[i*keyLen:(i+1)*keyLen])
		diffuse(newHash, d)
	}
	xorInto(d, material[(stripes-1)*keyLen:stripes*keyLen])
	return d
}

func xorInto(dst, src []byte) {
	for i := range dst {
		dst[i] ^= src[i]
	}
}
