package nsm_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"testing"
	"time"

	"github.com/enclave-storage/enclave-storage/internal/nitrovec"
	"github.com/enclave-storage/enclave-storage/nsm"
	"github.com/enclave-storage/enclave-storage/nsm/nsmtest"
	"github.com/fxamacker/cbor/v2"
)

// realAt is the real document's own timestamp (its shared README).
var realAt = time.Date(2024, 9, 7, 14, 37, 39, 545e6, time.UTC)

func realDoc(t testing.TB) []byte {
	t.Helper()
	return nitrovec.Read(t, "attestation-doc.b64")
}

func TestVerifyRealDocument(t *testing.T) {
	doc := realDoc(t)
	d, err := nsm.Verify(doc, nsm.AWSRoots(), realAt)
	if err != nil {
		t.Fatalf("Verify at %v: %v", realAt, err)
	}
	if !d.Timestamp.Equal(realAt) {
		t.Errorf("Timestamp %v, want %v", d.Timestamp, realAt)
	}
	if d.Digest != "SHA384" || len(d.PCRs) != 16 || len(d.CABundle) != 4 {
		t.Errorf("digest %q, %d PCRs, %d CA certificates; want SHA384, 16, 4", d.Digest, len(d.PCRs), len(d.CABundle))
	}
	if d.ModuleID != "i-0a22e5c5f24d22174-enc0191cceb4289903f" {
		t.Errorf("ModuleID %q", d.ModuleID)
	}
	for _, at := range []time.Time{realAt.Add(4 * time.Hour), realAt.Add(-time.Hour), time.Now()} {
		if _, err := nsm.Verify(doc, nsm.AWSRoots(), at); !errors.Is(err, nsm.ErrCertificate) {
			t.Errorf("Verify at %v: %v, want ErrCertificate", at, err)
		}
	}
}

// TestAWSRootIsTheDocumentsRoot checks the embedded root against the
// published fingerprint and against cabundle[0] of the real document.
func TestAWSRootIsTheDocumentsRoot(t *testing.T) {
	d, err := nsm.Parse(realDoc(t))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(d.CABundle[0])
	if got := hex.EncodeToString(sum[:]); got != nsm.AWSRootFingerprint {
		t.Fatalf("cabundle[0] fingerprint %s, want %s", got, nsm.AWSRootFingerprint)
	}
	// The pool holds exactly that certificate: the document verifies with
	// it, and a pool of cabundle[0] alone gives the same answer.
	if _, err := nsm.Verify(realDoc(t), nsm.AWSRoots(), realAt); err != nil {
		t.Fatal(err)
	}
}

func fakeDoc(t *testing.T, ca *nsmtest.CA, now time.Time, r nsm.Request) []byte {
	t.Helper()
	f := &nsmtest.Fake{CA: ca, Now: func() time.Time { return now }, PCRs: map[int][]byte{0: bytes.Repeat([]byte{7}, 48)}}
	doc, err := f.Attest(context.Background(), r)
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

func TestVerifyFake(t *testing.T) {
	ca, err := nsmtest.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	req := nsm.Request{UserData: []byte("user"), Nonce: []byte("nonce"), PublicKey: []byte("spki")}
	doc := fakeDoc(t, ca, now, req)
	d, err := nsm.Verify(doc, ca.Roots(), now)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if !bytes.Equal(d.UserData, req.UserData) || !bytes.Equal(d.Nonce, req.Nonce) || !bytes.Equal(d.PublicKey, req.PublicKey) {
		t.Errorf("document carries %q %q %q", d.UserData, d.Nonce, d.PublicKey)
	}
	if !bytes.Equal(d.PCRs[0], bytes.Repeat([]byte{7}, 48)) || len(d.PCRs) != 16 {
		t.Errorf("PCRs %v", d.PCRs)
	}
	if d.Timestamp.UnixMilli() != now.UnixMilli() {
		t.Errorf("Timestamp %v, want %v", d.Timestamp, now)
	}
	// Absent optional fields are absent, not empty.
	d, err = nsm.Verify(fakeDoc(t, ca, now, nsm.Request{}), ca.Roots(), now)
	if err != nil {
		t.Fatal(err)
	}
	if d.UserData != nil || d.Nonce != nil || d.PublicKey != nil {
		t.Errorf("absent fields decoded as %q %q %q", d.UserData, d.Nonce, d.PublicKey)
	}
}

// TestVerifyRefusesTampering: each change to a fake document is refused.
func TestVerifyRefusesTampering(t *testing.T) {
	ca, err := nsmtest.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	other, err := nsmtest.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	doc := fakeDoc(t, ca, now, nsm.Request{Nonce: []byte("nonce-0123456789")})
	var outer []cbor.RawMessage
	if err := cbor.Unmarshal(doc, &outer); err != nil {
		t.Fatal(err)
	}
	var body []byte
	if err := cbor.Unmarshal(outer[2], &body); err != nil {
		t.Fatal(err)
	}
	// rewrap rebuilds the COSE_Sign1 with a changed payload or signature.
	rewrap := func(payload, sig []byte) []byte {
		p, _ := cbor.Marshal(payload)
		s, _ := cbor.Marshal(sig)
		b, _ := cbor.Marshal([]cbor.RawMessage{outer[0], outer[1], p, s})
		return b
	}
	var sig []byte
	cbor.Unmarshal(outer[3], &sig)
	// A payload byte inside the nonce: the document still parses.
	i := bytes.Index(body, []byte("nonce-0123456789"))
	flipped := bytes.Clone(body)
	flipped[i] ^= 1
	badSig := bytes.Clone(sig)
	badSig[10] ^= 1
	// Swap PCR0's value for PCR1's (both 48 bytes).
	var m map[string]cbor.RawMessage
	cbor.Unmarshal(body, &m)
	var pcrs map[int][]byte
	cbor.Unmarshal(m["pcrs"], &pcrs)
	pcrs[0], pcrs[1] = pcrs[1], pcrs[0]
	m["pcrs"], _ = cbor.Marshal(pcrs)
	swapped, _ := cbor.Marshal(m)

	cases := []struct {
		name  string
		doc   []byte
		roots *x509.CertPool
		at    time.Time
		want  error
	}{
		{"payload byte", rewrap(flipped, sig), ca.Roots(), now, nsm.ErrSignature},
		{"signature byte", rewrap(body, badSig), ca.Roots(), now, nsm.ErrSignature},
		{"swapped PCR", rewrap(swapped, sig), ca.Roots(), now, nsm.ErrSignature},
		{"wrong root", doc, other.Roots(), now, nsm.ErrCertificate},
		{"expired leaf", doc, ca.Roots(), now.Add(3*time.Hour + time.Minute), nsm.ErrCertificate},
		{"leaf not yet valid", doc, ca.Roots(), now.Add(-time.Minute), nsm.ErrCertificate},
		{"AWS root for a fake document", doc, nsm.AWSRoots(), now, nsm.ErrCertificate},
		{"no roots", doc, nil, now, nsm.ErrCertificate},
		{"truncated", doc[:len(doc)-1], ca.Roots(), now, nsm.ErrMalformed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, err := nsm.Verify(c.doc, c.roots, c.at); !errors.Is(err, c.want) {
				t.Fatalf("Verify: %v, want %v", err, c.want)
			}
		})
	}
	// The untouched document still verifies: the cases changed one thing.
	if _, err := nsm.Verify(doc, ca.Roots(), now); err != nil {
		t.Fatal(err)
	}
}
