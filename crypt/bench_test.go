package crypt

import (
	"crypto/rand"
	"testing"
)

// BenchmarkSectorCipher measures userspace aes-xts-plain64 throughput on
// 4096-byte sectors (dm-crypt does the bulk work in the enclave; this is
// the helper's speed).
func BenchmarkSectorCipher(b *testing.B) {
	key := make([]byte, 64)
	rand.Read(key)
	c, err := NewSectorCipher(key, 4096, 0)
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 1<<20)
	b.SetBytes(int64(len(buf)))
	for i := 0; b.Loop(); i++ {
		if err := c.Encrypt(buf, buf, int64(i%1024)<<20); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSectorCipherParallel is BenchmarkSectorCipher on every
// GOMAXPROCS goroutine at once, each on its own 1 MiB buffer with one
// shared SectorCipher (sectors are independent): the machine's total, to
// compare with `openssl speed -multi N`.
func BenchmarkSectorCipherParallel(b *testing.B) {
	key := make([]byte, 64)
	rand.Read(key)
	c, err := NewSectorCipher(key, 4096, 0)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(1 << 20)
	b.RunParallel(func(pb *testing.PB) {
		buf := make([]byte, 1<<20)
		for i := 0; pb.Next(); i++ {
			if err := c.Encrypt(buf, buf, int64(i%1024)<<20); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkOpen measures a whole unlock: header read and validation, KDF,
// keyslot decryption, AF merge, digest; with DefaultKDF (argon2id t=4,
// 64 MiB, 4 lanes: what passphrases get) and with MachineKeyKDF (PBKDF2
// at 1000 iterations: what the enclave enrolls machine keys with). Compare
// the time and B/op of the two.
func BenchmarkOpen(b *testing.B) {
	for _, bc := range []struct {
		name string
		kdf  KDF
	}{{"argon2id-default", DefaultKDF()}, {"pbkdf2-machine-key", MachineKeyKDF()}} {
		b.Run(bc.name, func(b *testing.B) {
			dev := &memDevice{buf: make([]byte, 17<<20)}
			key := make([]byte, 64)
			rand.Read(key)
			if _, err := Format(bg, dev, key, &FormatOptions{KDF: bc.kdf}); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				v, err := OpenWithPolicy(bg, dev, key, EnclavePolicy())
				if err != nil {
					b.Fatal(err)
				}
				v.Zero()
			}
		})
	}
}

// BenchmarkAFMerge measures the anti-forensic merge of a 512-bit key
// (4000 stripes of sha256 diffusion), the fixed cost of every unlock.
func BenchmarkAFMerge(b *testing.B) {
	key := make([]byte, 64)
	newHash, _ := hashByName("sha256")
	m, err := afSplit(rand.Reader, newHash, key, afStripes)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		afMerge(newHash, m, 64, afStripes)
	}
}
