package cms

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"testing"

	"github.com/enclave-storage/enclave-storage/internal/nitrovec"
)

// seeds returns inputs for the fuzzers: our own envelopes and, when the
// shared vectors are present, the real KMS one.
func seeds(f *testing.F, k *rsa.PrivateKey) [][]byte {
	var out [][]byte
	for _, n := range []int{0, 12, 32, 2000} {
		ct, err := Encrypt(rand.Reader, make([]byte, n), &k.PublicKey)
		if err != nil {
			f.Fatal(err)
		}
		out = append(out, ct)
	}
	if v := nitrovec.Seed(f, "kms-ciphertext-for-recipient.b64"); v != nil {
		out = append(out, v)
	}
	return out
}

// FuzzBER: the reader never panics, and what it accepts stays within its
// bounds.
func FuzzBER(f *testing.F) {
	for _, s := range seeds(f, key(f)) {
		f.Add(s)
	}
	f.Add([]byte{0x30, 0x80, 0x30, 0x80, 0, 0, 0, 0})
	f.Add([]byte{0x24, 0x80, 0x04, 0x01, 0xff, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := parseBER(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v is not ErrMalformed", err)
			}
			return
		}
		n, depth := count(e, 0)
		if n > maxElements || depth > maxDepth {
			t.Fatalf("accepted %d elements %d deep", n, depth)
		}
	})
}

func count(e *element, depth int) (n, deepest int) {
	n, deepest = 1, depth
	for _, c := range e.children {
		cn, cd := count(c, depth+1)
		n += cn
		deepest = max(deepest, cd)
	}
	return n, deepest
}

// FuzzDecrypt: Decrypt never panics and every error is one of its
// sentinels. The key is the real vector's when present, so mutations of the
// real envelope and of ours reach the decryption.
func FuzzDecrypt(f *testing.F) {
	k := key(f)
	if pemKey := nitrovec.Seed(f, "kms-recipient-key.pem"); pemKey != nil {
		blk, _ := pem.Decode(pemKey)
		pk, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
		if err != nil {
			f.Fatal(err)
		}
		k = pk.(*rsa.PrivateKey)
	}
	for _, s := range seeds(f, k) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		pt, err := Decrypt(b, k)
		switch {
		case err == nil:
			if len(pt) >= len(b) {
				t.Fatalf("%d plaintext bytes from %d input bytes", len(pt), len(b))
			}
		case errors.Is(err, ErrMalformed), errors.Is(err, ErrUnsupported),
			errors.Is(err, ErrRecipient), errors.Is(err, ErrDecrypt):
		default:
			t.Fatalf("error %v is not a sentinel", err)
		}
	})
}
