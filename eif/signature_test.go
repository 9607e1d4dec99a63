package eif

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"hash/crc32"
	"math/big"
	"strings"
	"testing"
	"time"
)

func TestCRC32Combine(t *testing.T) {
	data := randBytes(7, 100000)
	for _, split := range []int{0, 1, 3, 544, 4096, 99999, 100000} {
		a, b := data[:split], data[split:]
		got := crc32Combine(crc32.ChecksumIEEE(a), crc32.ChecksumIEEE(b), int64(len(b)))
		if want := crc32.ChecksumIEEE(data); got != want {
			t.Errorf("split %d: %08x, want %08x", split, got, want)
		}
	}
}

func TestCBOR(t *testing.T) {
	// Examples from RFC 8949 Appendix A.
	tests := []struct {
		hex  string
		want string // fmt %v of the decoded value
	}{
		{"00", "0"},
		{"17", "23"},
		{"1818", "24"},
		{"1903e8", "1000"},
		{"1b000000e8d4a51000", "1000000000000"},
		{"20", "0"}, // -1 is cborNeg(0)
		{"3863", "99"},
		{"40", "[]"},
		{"4401020304", "[1 2 3 4]"},
		{"6449455446", "IETF"},
		{"83010203", "[1 2 3]"},
		{"a201020304", "[{1 2} {3 4}]"},
		{"c11a514b67b0", "{1 1363896240}"},
		{"f4", "false"},
		{"f6", "<nil>"},
	}
	for _, tt := range tests {
		b, _ := hex.DecodeString(tt.hex)
		v, err := cborDecode(b)
		if err != nil {
			t.Errorf("%s: %v", tt.hex, err)
			continue
		}
		if got := fmt.Sprint(v); got != tt.want {
			t.Errorf("%s: %s, want %s", tt.hex, got, tt.want)
		}
	}
	for _, bad := range []string{"", "18", "5f", "9f01ff", "9b00000000ffffffff", "bb00000000ffffffff", "5a00000010", "f97c00", "0000",
		strings.Repeat("81", 20) + "00"} {
		b, _ := hex.DecodeString(bad)
		if _, err := cborDecode(b); !errors.Is(err, errCBOR) {
			t.Errorf("%q decoded: %v", bad, err)
		}
	}
	// Encoding is shortest-form, as serde_cbor's.
	for _, c := range []struct {
		n    int64
		want string
	}{{0, "00"}, {23, "17"}, {24, "1818"}, {255, "18ff"}, {256, "190100"}, {65536, "1a00010000"}, {1 << 32, "1b0000000100000000"}, {-1, "20"}, {-35, "3822"}} {
		if got := hex.EncodeToString(cborInt(nil, c.n)); got != c.want {
			t.Errorf("cborInt(%d) = %s, want %s", c.n, got, c.want)
		}
	}
	if got := hex.EncodeToString(cborU8Array(nil, []byte{1, 200})); got != "820118c8" {
		t.Errorf("u8 array %s", got)
	}
}

// TestCOSEKnownAnswer verifies an ES384 COSE_Sign1 from the test suite of
// aws-nitro-enclaves-cose (src/sign.rs, cose_sign1_ec384_validate, Apache
// 2.0; "validated against COSE-C"): payload is the first sentence of Pride
// and Prejudice, key is the static P-384 test key there.
func TestCOSEKnownAnswer(t *testing.T) {
	const (
		x = "5a829f62f2f4f095c0e922719285b4b981c677912870a413137a5d7319916fa8584a6036951d06ffeae99ca73ab1a2dc"
		y = "e1b76e08cb20d6afcea7423f8b49ec841dde6f210a6174750bf8136a315494224df153184557a6c29a1d7994804f604c"
		// protected {1: -35}, unprotected {4: '11'}, payload, signature r||s
		msg = "8444a1013822a104423131" + "5875" +
			"497420697320612074727574682075" + "6e6976657273616c6c792061636b6e6f776c65646765642c2074686174" +
			"20612073696e676c65206d616e20696e20706f7373657373696f6e206f66" + "206120676f6f6420666f7274756e652c206d75737420626520696e2077" +
			"616e74206f66206120776966652e" + "5860" +
			"cd42d27632d5414e4b545c95fde6e3505b93580f4b7731d14a86523175266cdeb24aff2de3364e9ceee9f9f795a01515" +
			"5bc712aa2863e2aaf6078a819093fdfc7059a3f1467f64ec7e221fd163d80b3b552625cf379d1cbb9e5138ccd07a1931"
		text = "It is a truth universally acknowledged, that a single man in possession of a good fortune, must be in want of a wife."
	)
	point, _ := hex.DecodeString("04" + x + y)
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P384(), point)
	if err != nil {
		t.Fatal(err)
	}
	b, err := hex.DecodeString(msg)
	if err != nil {
		t.Fatal(err)
	}
	payload, err := verifyCOSESign1(b, pub)
	if err != nil || string(payload) != text {
		t.Fatalf("verify: %q %v", payload, err)
	}
	// Tagged (18) form verifies too.
	if _, err := verifyCOSESign1(append([]byte{0xd2}, b...), pub); err != nil {
		t.Fatalf("tagged: %v", err)
	}
	for _, i := range []int{len(b) - 1, 20, 4} {
		bad := append([]byte{}, b...)
		bad[i] ^= 1
		if _, err := verifyCOSESign1(bad, pub); !errors.Is(err, ErrBadSignature) {
			t.Errorf("flipped byte %d verified: %v", i, err)
		}
	}
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if _, err := verifyCOSESign1(b, &other.PublicKey); !errors.Is(err, ErrBadSignature) {
		t.Errorf("P-256 key verified an ES384 message: %v", err)
	}
}

func testSigner(t testing.TB, curve elliptic.Curve) *Signer {
	t.Helper()
	key, err := ecdsa.GenerateKey(curve, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "eif test signer", Organization: []string{"enclave-storage"}},
		NotBefore:    time.Unix(1700000000, 0),
		NotAfter:     time.Unix(1700000000, 0).Add(24 * time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &Signer{CertificatePEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), Key: key}
}

func TestSignedBuild(t *testing.T) {
	rds := [][]byte{[]byte("bootstrap"), []byte("application")}
	_, unsigned := build(t, testSpec(rds...))
	for _, curve := range []elliptic.Curve{elliptic.P384(), elliptic.P256(), elliptic.P521()} {
		t.Run(curve.Params().Name, func(t *testing.T) {
			spec := testSpec(rds...)
			spec.Signer = testSigner(t, curve)
			img, pcrs := build(t, spec)
			block, _ := pem.Decode(spec.Signer.CertificatePEM)
			d := sha512.Sum384(block.Bytes)
			if !bytes.Equal(pcrs.PCR8, Extend(d[:])) {
				t.Fatalf("PCR8 %x", pcrs.PCR8)
			}
			if !bytes.Equal(pcrs.PCR0, unsigned.PCR0) || !bytes.Equal(pcrs.PCR1, unsigned.PCR1) || !bytes.Equal(pcrs.PCR2, unsigned.PCR2) {
				t.Fatal("signing changed PCR0-2")
			}
			// CRC by hand over the whole signed file.
			crc := crc32.ChecksumIEEE(append(append([]byte{}, img[:544]...), img[548:]...))
			if got := binary.BigEndian.Uint32(img[544:]); got != crc {
				t.Fatalf("crc %08x, want %08x", got, crc)
			}
			f, err := Read(bytes.NewReader(img), int64(len(img)))
			if err != nil {
				t.Fatal(err)
			}
			if last := f.Sections[len(f.Sections)-1]; last.Type != SectionSignature || len(f.Sections) != 6 {
				t.Fatalf("sections %+v", f.Sections)
			}
			if !bytes.Equal(f.PCRs.PCR8, pcrs.PCR8) {
				t.Fatalf("Read PCR8 %x, want %x", f.PCRs.PCR8, pcrs.PCR8)
			}
			cert, err := f.VerifySignature()
			if err != nil || cert.Subject.CommonName != "eif test signer" {
				t.Fatalf("verify: %v", err)
			}
			sigs, err := ParseSignatureSection(f.Signature)
			if err != nil || len(sigs) != 1 || !bytes.Equal(sigs[0].SigningCertificate, spec.Signer.CertificatePEM) {
				t.Fatalf("parse: %v %+v", err, sigs)
			}

			// Change a ramdisk byte and repair the CRC: the file parses,
			// but the signature no longer covers its PCR0.
			bad := append([]byte{}, img...)
			rd := f.Sections[4]
			bad[rd.DataOffset()] ^= 1
			binary.BigEndian.PutUint32(bad[544:], crc32.ChecksumIEEE(append(append([]byte{}, bad[:544]...), bad[548:]...)))
			f2, err := Read(bytes.NewReader(bad), int64(len(bad)))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f2.VerifySignature(); !errors.Is(err, ErrBadSignature) {
				t.Fatalf("tampered image verified: %v", err)
			}
		})
	}
}

func TestSignerErrors(t *testing.T) {
	s := testSigner(t, elliptic.P384())
	other := testSigner(t, elliptic.P384())
	for name, sg := range map[string]*Signer{
		"key mismatch": {CertificatePEM: s.CertificatePEM, Key: other.Key},
		"no key":       {CertificatePEM: s.CertificatePEM},
		"not pem":      {CertificatePEM: []byte("nope"), Key: s.Key},
	} {
		spec := testSpec([]byte("b"))
		spec.Signer = sg
		if _, err := Build(context.Background(), new(bytes.Buffer), spec); !errors.Is(err, ErrInvalidSpec) {
			t.Errorf("%s: %v", name, err)
		}
	}
	img, _ := build(t, testSpec([]byte("b")))
	f, err := Read(bytes.NewReader(img), int64(len(img)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.VerifySignature(); !errors.Is(err, ErrBadSignature) {
		t.Errorf("unsigned image: %v", err)
	}
}

func FuzzCBOR(f *testing.F) {
	s := testSigner(f, elliptic.P384())
	sec, err := s.signatureSection(make([]byte, 48))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(sec)
	f.Add([]byte{0x84, 0x40, 0xa0, 0x40, 0x40})
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = cborDecode(b)
		if sigs, err := ParseSignatureSection(b); err == nil && len(sigs) == 0 {
			t.Fatal("no signatures without error")
		}
		_, _, _ = parsePCRInfo(b)
	})
}
