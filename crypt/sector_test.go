package crypt

import (
	"bytes"
	"crypto/aes"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/crypto/xts"
)

// refXTS is an independent aes-xts-plain64 written from the IEEE 1619
// definition with crypto/aes only: T = AES(k2, le128(iv)); per 16-byte
// block C = AES(k1, P^T)^T; T *= α in GF(2^128) (little-endian, 0x87).
func refXTS(t *testing.T, key, data []byte, iv uint64) []byte {
	t.Helper()
	k1, err := aes.NewCipher(key[:len(key)/2])
	if err != nil {
		t.Fatal(err)
	}
	k2, _ := aes.NewCipher(key[len(key)/2:])
	var tw [16]byte
	binary.LittleEndian.PutUint64(tw[:], iv)
	k2.Encrypt(tw[:], tw[:])
	out := make([]byte, len(data))
	var x [16]byte
	for i := 0; i < len(data); i += 16 {
		for j := range 16 {
			x[j] = data[i+j] ^ tw[j]
		}
		k1.Encrypt(x[:], x[:])
		for j := range 16 {
			out[i+j] = x[j] ^ tw[j]
		}
		carry := tw[15] >> 7
		for j := 15; j > 0; j-- {
			tw[j] = tw[j]<<1 | tw[j-1]>>7
		}
		tw[0] = tw[0]<<1 ^ 0x87*carry
	}
	return out
}

func TestSectorCipherIEEEVector(t *testing.T) {
	lines := strings.Split(strings.TrimSpace(string(fileBytes(t, "testdata/xts-aes256-vector10.txt"))), "\n")
	var hexes []string
	for _, l := range lines {
		if !strings.HasPrefix(l, "#") {
			hexes = append(hexes, l)
		}
	}
	key, _ := hex.DecodeString(hexes[0])
	want, _ := hex.DecodeString(hexes[1])
	plain := make([]byte, 512)
	for i := range plain {
		plain[i] = byte(i)
	}
	if got := refXTS(t, key, plain, 0xff); !bytes.Equal(got, want) {
		t.Fatal("reference XTS does not reproduce the IEEE vector")
	}
	// 512-byte sectors: sector 255 of the segment has IV 255.
	c, err := NewSectorCipher(key, 512, 0)
	if err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 512)
	if err := c.Encrypt(got, plain, 0xff*512); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("SectorCipher 512 != IEEE vector 10")
	}
	// A 4096-byte sector uses one IV for all 4096 bytes; its first 512
	// bytes equal a 512-byte unit with the same IV.
	c4, _ := NewSectorCipher(key, 4096, 0xff)
	big := make([]byte, 4096)
	copy(big, plain)
	if err := c4.Encrypt(big, big, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(big[:512], want) {
		t.Fatalf("SectorCipher 4096 first 512 bytes != IEEE vector 10")
	}
}

// TestSectorCipherIV checks the IV scheme dm-crypt uses with the table
// Params renders: sector_size:N without iv_large_sectors counts IVs in
// 512-byte units, plus iv_offset.
func TestSectorCipherIV(t *testing.T) {
	key := make([]byte, 64)
	rand.Read(key)
	for _, ss := range []int{512, 1024, 2048, 4096} {
		for _, tweak := range []uint64{0, 7, 1 << 40} {
			c, err := NewSectorCipher(key, ss, tweak)
			if err != nil {
				t.Fatal(err)
			}
			data := make([]byte, 4*ss)
			rand.Read(data)
			const off = 12 * 4096
			enc := make([]byte, len(data))
			if err := c.Encrypt(enc, data, off); err != nil {
				t.Fatal(err)
			}
			for i := 0; i < len(data); i += ss {
				iv := tweak + uint64(off+i)/512
				if want := refXTS(t, key, data[i:i+ss], iv); !bytes.Equal(enc[i:i+ss], want) {
					t.Fatalf("sector size %d tweak %d: sector at %d differs from reference with IV %d", ss, tweak, off+i, iv)
				}
			}
			dec := make([]byte, len(data))
			if err := c.Decrypt(dec, enc, off); err != nil || !bytes.Equal(dec, data) {
				t.Fatalf("decrypt round trip failed: %v", err)
			}
		}
	}
	c, _ := NewSectorCipher(key, 4096, 0)
	for _, tt := range []struct {
		off int64
		n   int
	}{{512, 4096}, {0, 100}, {-4096, 4096}} {
		if err := c.Encrypt(make([]byte, tt.n), make([]byte, tt.n), tt.off); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("Encrypt(off %d, len %d) = %v, want ErrInvalidArgument", tt.off, tt.n, err)
		}
	}
	if _, err := NewSectorCipher(key[:48], 512, 0); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("48-byte key: %v", err)
	}
}

// TestSectorCipherMatchesCryptsetup: cryptsetup's offline reencryption
// encrypts and decrypts data in userspace the way dm-crypt will read it
// (it must: the kernel reads that data afterwards). Data cryptsetup
// encrypts decrypts with our SectorCipher, and data we encrypt cryptsetup
// decrypts.
func TestSectorCipherMatchesCryptsetup(t *testing.T) {
	cryptsetupPath(t)
	for _, ss := range []int{512, 4096} {
		t.Run("sector"+strconv.Itoa(ss), func(t *testing.T) {
			dir := t.TempDir()
			plain := make([]byte, 1<<20)
			rand.Read(plain)
			data := filepath.Join(dir, "data")
			if err := os.WriteFile(data, plain, 0o600); err != nil {
				t.Fatal(err)
			}
			hdr := filepath.Join(dir, "hdr")
			kf := writeKeyFile(t, dir, "k", []byte("pw"))
			mustCryptsetup(t, "reencrypt", "--encrypt", "--batch-mode", "--type", "luks2", "--header", hdr,
				"--key-file", kf, "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000",
				"--sector-size", strconv.Itoa(ss), "--resilience", "none", "--force-offline-reencrypt", data)
			hf, err := os.Open(hdr)
			if err != nil {
				t.Fatal(err)
			}
			defer hf.Close()
			v, err := OpenDetached(bg, hf, int64(len(plain)), []byte("pw"))
			if err != nil {
				t.Fatal(err)
			}
			sc, err := v.SectorCipher()
			if err != nil {
				t.Fatal(err)
			}
			enc := fileBytes(t, data)
			if bytes.Equal(enc, plain) {
				t.Fatal("cryptsetup did not encrypt")
			}
			dec := make([]byte, len(enc))
			if err := sc.Decrypt(dec, enc[v.Offset:], 0); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(dec, plain) {
				t.Fatalf("our decryption of cryptsetup's ciphertext differs (sector size %d)", ss)
			}

			// Other way: we encrypt, cryptsetup decrypts.
			plain2 := make([]byte, len(plain))
			rand.Read(plain2)
			enc2 := make([]byte, len(plain2))
			if err := sc.Encrypt(enc2, plain2, 0); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(data, enc2, 0o600); err != nil {
				t.Fatal(err)
			}
			mustCryptsetup(t, "reencrypt", "--decrypt", "--batch-mode", "--header", hdr, "--key-file", kf,
				"--resilience", "none", "--force-offline-reencrypt", data)
			if !bytes.Equal(fileBytes(t, data), plain2) {
				t.Fatalf("cryptsetup's decryption of our ciphertext differs (sector size %d)", ss)
			}
		})
	}
}

// TestSectorCipherMatchesXCryptoXTS holds SectorCipher, for both key
// sizes (aes-128-xts and aes-256-xts) and every sector size, to
// golang.org/x/crypto/xts, whose sector number is the same little-endian
// 64-bit tweak as plain64's IV; in place and into another buffer.
func TestSectorCipherMatchesXCryptoXTS(t *testing.T) {
	for _, keyLen := range []int{32, 64} {
		for _, ss := range []int{512, 1024, 2048, 4096} {
			key := make([]byte, keyLen)
			rand.Read(key)
			ref, err := xts.NewCipher(aes.NewCipher, key)
			if err != nil {
				t.Fatal(err)
			}
			c, err := NewSectorCipher(key, ss, 3)
			if err != nil {
				t.Fatal(err)
			}
			data := make([]byte, 3*ss)
			rand.Read(data)
			const off = 5 * 4096
			want := make([]byte, len(data))
			for i := 0; i < len(data); i += ss {
				ref.Encrypt(want[i:i+ss], data[i:i+ss], 3+uint64(off+i)/512)
			}
			got := make([]byte, len(data))
			if err := c.Encrypt(got, data, off); err != nil || !bytes.Equal(got, want) {
				t.Fatalf("key %d bytes, sector %d: Encrypt differs from x/crypto/xts (err %v)", keyLen, ss, err)
			}
			if err := c.Decrypt(got, got, off); err != nil || !bytes.Equal(got, data) {
				t.Fatalf("key %d bytes, sector %d: in-place Decrypt does not invert (err %v)", keyLen, ss, err)
			}
		}
	}
}
