package cms

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/enclave-storage/enclave-storage/internal/nitrovec"
)

// kmsVector returns the real CiphertextForRecipient and its key.
func kmsVector(t testing.TB) ([]byte, *rsa.PrivateKey) {
	t.Helper()
	ct := nitrovec.Read(t, "kms-ciphertext-for-recipient.b64")
	blk, _ := pem.Decode(nitrovec.Read(t, "kms-recipient-key.pem"))
	if blk == nil {
		t.Fatal("kms-recipient-key.pem: no PEM block")
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		t.Fatalf("parse key: %v", err)
	}
	return ct, k.(*rsa.PrivateKey)
}

var (
	testKeyOnce sync.Once
	testKey     *rsa.PrivateKey
)

// key returns one RSA-2048 key shared by the tests (generation is slow).
func key(t testing.TB) *rsa.PrivateKey {
	t.Helper()
	testKeyOnce.Do(func() {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		testKey = k
	})
	return testKey
}

func TestDecryptKMSVector(t *testing.T) {
	ct, k := kmsVector(t)
	pt, err := Decrypt(ct, k)
	if err != nil {
		t.Fatalf("Decrypt: %v", err)
	}
	if string(pt) != "Hello, World" {
		t.Fatalf("plaintext %q, want %q", pt, "Hello, World")
	}
}

// TestEncryptLayoutMatchesKMS checks that Encrypt writes KMS's layout byte
// for byte: for the same key size and plaintext length, its output differs
// from the real CiphertextForRecipient only inside the four random or
// key-dependent values (located by the reader, not by hard-coded offsets).
func TestEncryptLayoutMatchesKMS(t *testing.T) {
	ct, k := kmsVector(t)
	ours, err := Encrypt(rand.Reader, []byte("Hello, World"), &k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	if len(ours) != len(ct) {
		t.Fatalf("length %d, KMS's %d", len(ours), len(ct))
	}
	want, got := blankValues(t, ct), blankValues(t, ours)
	if !bytes.Equal(want, got) {
		t.Fatalf("layout differs from KMS's:\nKMS  %x\nours %x", want, got)
	}
	pt, err := Decrypt(ours, k)
	if err != nil || string(pt) != "Hello, World" {
		t.Fatalf("Decrypt(Encrypt) = %q, %v", pt, err)
	}
}

// blankValues zeroes the SKI, encrypted key, IV and ciphertext in b.
func blankValues(t *testing.T, b []byte) []byte {
	t.Helper()
	env, err := parseEnvelope(b)
	if err != nil {
		t.Fatal(err)
	}
	out := bytes.Clone(b)
	for _, v := range [][]byte{env.ski, env.encryptedKey, env.iv, env.ciphertext} {
		i := bytes.Index(b, v)
		if i < 0 {
			t.Fatalf("value %x not contiguous in the encoding", v)
		}
		clear(out[i : i+len(v)])
	}
	return out
}

func TestRoundTrip(t *testing.T) {
	k := key(t)
	for _, n := range []int{0, 1, 15, 16, 17, 32, 1023, 1024, 1025, 4096, 10000} {
		pt := make([]byte, n)
		rand.Read(pt)
		ct, err := Encrypt(rand.Reader, pt, &k.PublicKey)
		if err != nil {
			t.Fatalf("%d: Encrypt: %v", n, err)
		}
		got, err := Decrypt(ct, k)
		if err != nil {
			t.Fatalf("%d: Decrypt: %v", n, err)
		}
		if !bytes.Equal(got, pt) {
			t.Fatalf("%d: round trip differs", n)
		}
	}
}

func TestDecryptWrongKey(t *testing.T) {
	ct, _ := kmsVector(t)
	if _, err := Decrypt(ct, key(t)); !errors.Is(err, ErrRecipient) {
		t.Fatalf("Decrypt with another key: %v, want ErrRecipient", err)
	}
}

// TestDecryptRefuses edits the real KMS vector one field at a time and
// checks each edit is refused with the right sentinel.
func TestDecryptRefuses(t *testing.T) {
	ct, k := kmsVector(t)
	env, err := parseEnvelope(ct)
	if err != nil {
		t.Fatal(err)
	}
	// replace returns ct with occurrence n (0-based) of old replaced by new.
	replace := func(old, new string, n int) []byte {
		t.Helper()
		o, _ := hex.DecodeString(old)
		nb, _ := hex.DecodeString(new)
		if len(o) != len(nb) {
			t.Fatalf("replacement changes the length")
		}
		out := bytes.Clone(ct)
		off := 0
		for ; n >= 0; n-- {
			i := bytes.Index(out[off:], o)
			if i < 0 {
				t.Fatalf("%s not in the vector", old)
			}
			off += i
			if n > 0 {
				off += len(o)
			}
		}
		copy(out[off:], nb)
		return out
	}
	flip := func(v []byte, i int) []byte {
		out := bytes.Clone(ct)
		out[bytes.Index(ct, v)+i] ^= 0x01
		return out
	}
	const (
		sha256OID = "0609608648016503040201"
		sha384OID = "0609608648016503040202"
	)
	cases := []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, ErrMalformed},
		{"truncated", ct[:len(ct)-1], ErrMalformed},
		{"missing end-of-contents", ct[:len(ct)-2], ErrMalformed},
		{"trailing byte", append(bytes.Clone(ct), 0), ErrMalformed},
		{"too large", append(bytes.Clone(ct), make([]byte, MaxSize)...), ErrMalformed},
		{"signed data, not enveloped", replace("2a864886f70d010703", "2a864886f70d010702", 0), ErrUnsupported},
		{"EnvelopedData version 0", replace("3080020102", "3080020100", 0), ErrUnsupported},
		{"EnvelopedData version 3", replace("3080020102", "3080020103", 0), ErrUnsupported},
		{"recipientInfos not a SET", replace("3182016b", "3082016b", 0), ErrMalformed},
		{"recipient version 0", replace("0201028020", "0201008020", 0), ErrUnsupported},
		{"recipient identified by [1]", replace("0201028020", "0201028120", 0), ErrUnsupported},
		{"recipient is KeyAgreeRecipientInfo", replace("308201670201", "a18201670201", 0), ErrUnsupported},
		{"RSA PKCS#1 v1.5 key transport", replace("2a864886f70d010107", "2a864886f70d010101", 0), ErrUnsupported},
		{"OAEP hash SHA-384", replace(sha256OID, sha384OID, 0), ErrUnsupported},
		{"MGF1 hash SHA-384", replace(sha256OID, sha384OID, 1), ErrUnsupported},
		{"MGF other than MGF1", replace("2a864886f70d010108", "2a864886f70d010109", 0), ErrUnsupported},
		{"OAEP hash params not NULL", replace("0500a11c", "0400a11c", 0), ErrMalformed},
		{"OAEP label source [2]", replace("a00f300d", "a20f300d", 0), ErrUnsupported},
		{"OAEP hash default (SHA-1)", replace("a00f300d", "a30f300d", 0), ErrMalformed},
		{"inner content not id-data", replace("2a864886f70d010701", "2a864886f70d010702", 0), ErrUnsupported},
		{"AES-128-CBC", replace("60864801650304012a", "608648016503040102", 0), ErrUnsupported},
		{"IV of 15 bytes", replace("0410"+hex.EncodeToString(env.iv), "040f"+hex.EncodeToString(env.iv[:15])+"04", 0), ErrMalformed},
		{"content not whole blocks", replace("0410"+hex.EncodeToString(env.ciphertext), "040f"+hex.EncodeToString(env.ciphertext[:15])+"04", 0), ErrMalformed},
		{"content chunk not OCTET STRING", replace("a0800410", "a0800310", 0), ErrMalformed},
		{"SKI changed", flip(env.ski, 0), ErrRecipient},
		{"encrypted key changed", flip(env.encryptedKey, 100), ErrDecrypt},
		{"last ciphertext byte changed (padding)", flip(env.ciphertext, 15), ErrDecrypt},
		{"primitive with indefinite length", replace("020102", "028002", 0), ErrMalformed},
		{"length with 4 bytes", replace("3182016b", "3184016b", 0), ErrMalformed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			pt, err := Decrypt(c.in, k)
			if !errors.Is(err, c.want) {
				t.Fatalf("Decrypt = %q, %v; want %v", pt, err, c.want)
			}
		})
	}
}

// TestOpenSSLEncryptsWeDecrypt: OpenSSL's streaming output (BER, indefinite
// lengths, KMS's form) for a recipient identified by keyid must open with
// Decrypt; so must its non-streaming DER output, the other legal encoding.
func TestOpenSSLEncryptsWeDecrypt(t *testing.T) {
	openssl := lookOpenSSL(t)
	dir := t.TempDir()
	k := key(t)
	cert := writeKeyAndCert(t, openssl, dir, k)
	for _, stream := range []bool{true, false} {
		for _, n := range []int{0, 12, 16, 5000} {
			pt := bytes.Repeat([]byte("enclave!"), n/8+1)[:n]
			in := filepath.Join(dir, "pt")
			if err := os.WriteFile(in, pt, 0o600); err != nil {
				t.Fatal(err)
			}
			args := []string{"cms", "-encrypt", "-binary", "-in", in, "-keyid", "-recip", cert,
				"-keyopt", "rsa_padding_mode:oaep", "-keyopt", "rsa_oaep_md:sha256",
				"-aes-256-cbc", "-outform", "DER"}
			if stream {
				args = append(args, "-stream")
			}
			out, err := exec.Command(openssl, args...).Output()
			if err != nil {
				t.Fatalf("openssl cms -encrypt: %v", stderr(err))
			}
			if indefinite := len(out) > 2 && out[1] == 0x80; indefinite != stream {
				t.Fatalf("stream %v: openssl output starts % x", stream, out[:2])
			}
			got, err := Decrypt(out, k)
			if err != nil {
				t.Fatalf("stream %v, %d bytes: Decrypt(openssl): %v", stream, n, err)
			}
			if !bytes.Equal(got, pt) {
				t.Fatalf("stream %v, %d bytes: got %q", stream, n, got)
			}
		}
	}
}

// TestWeEncryptOpenSSLDecrypts: Encrypt's output must open with OpenSSL.
func TestWeEncryptOpenSSLDecrypts(t *testing.T) {
	openssl := lookOpenSSL(t)
	dir := t.TempDir()
	k := key(t)
	writeKeyAndCert(t, openssl, dir, k)
	for _, n := range []int{0, 12, 16, 5000} {
		pt := bytes.Repeat([]byte("parent?"), n/7+1)[:n]
		ct, err := Encrypt(rand.Reader, pt, &k.PublicKey)
		if err != nil {
			t.Fatal(err)
		}
		in := filepath.Join(dir, "ct")
		if err := os.WriteFile(in, ct, 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := exec.Command(openssl, "cms", "-decrypt", "-binary", "-inform", "DER", "-in", in,
			"-inkey", filepath.Join(dir, "key.pem")).Output()
		if err != nil {
			t.Fatalf("%d bytes: openssl cms -decrypt: %v", n, stderr(err))
		}
		if !bytes.Equal(got, pt) {
			t.Fatalf("%d bytes: openssl decrypted %q", n, got)
		}
	}
}

func lookOpenSSL(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl not installed")
	}
	return p
}

func stderr(err error) string {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return err.Error() + ": " + strings.TrimSpace(string(ee.Stderr))
	}
	return err.Error()
}

// writeKeyAndCert writes key.pem and a self-signed cert.pem for k whose
// subjectKeyIdentifier extension is SHA-256(SPKI), the identifier KMS uses
// (OpenSSL's default would be SHA-1), and returns the certificate's path.
func writeKeyAndCert(t *testing.T, openssl, dir string, k *rsa.PrivateKey) string {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	keyPath := filepath.Join(dir, "key.pem")
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	ski, err := SubjectKeyID(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	certPath := filepath.Join(dir, "cert.pem")
	cmd := exec.Command(openssl, "req", "-x509", "-new", "-key", keyPath, "-out", certPath,
		"-subj", "/CN=cms test recipient", "-days", "1",
		"-addext", "subjectKeyIdentifier="+colonHex(ski))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("openssl req: %v: %s", err, out)
	}
	// Check OpenSSL took the identifier as given.
	out, err := exec.Command(openssl, "x509", "-in", certPath, "-noout", "-ext", "subjectKeyIdentifier").Output()
	if err != nil {
		t.Fatalf("openssl x509: %v", stderr(err))
	}
	if !strings.Contains(strings.ReplaceAll(string(out), ":", ""), strings.ToUpper(hex.EncodeToString(ski))) {
		t.Fatalf("certificate SKI %q, want %x", out, ski)
	}
	return certPath
}

func colonHex(b []byte) string {
	s := make([]string, len(b))
	for i, x := range b {
		s[i] = hex.EncodeToString([]byte{x})
	}
	return strings.ToUpper(strings.Join(s, ":"))
}
