//go:build !amd64 || purego

package crypt

// roundKeys has no fast path outside amd64: newRoundKeys returns nil and
// SectorCipher uses crypto/aes block by block.
type roundKeys struct{}

func newRoundKeys([]byte) *roundKeys { return nil }

func (*roundKeys) xts(dst, src []byte, lo, hi uint64, decrypt bool) {
	panic("crypt: no bulk AES on this platform")
}
