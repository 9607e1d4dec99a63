// Package nsmtest is a test double for the Nitro Secure Module: a P-384
// certificate chain shaped like AWS's (root, intermediate, per-document leaf)
// and a Fake Attester that signs attestation documents nsm.Verify accepts
// with that chain's root.
//
// CA.PEM and ParseCA carry a CA to another process (a test-only enclave
// binary signs, a test KMS trusts RootPEM).
//
// It is for tests and test-only binaries (selected by build tags), never for
// runtime configuration: a document from a Fake proves nothing to anyone who
// does not trust its CA.
package nsmtest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"time"

	"github.com/enclave-storage/enclave-storage/nsm"
	"github.com/fxamacker/cbor/v2"
	"github.com/veraison/go-cose"
)

// Validity of the test certificates, like AWS's: the root for decades, the
// intermediate for days, each document's leaf for three hours.
const (
	rootValidity  = 30 * 365 * 24 * time.Hour
	interValidity = 30 * 24 * time.Hour
	leafValidity  = 3 * time.Hour
)

// CA is a test P-384 root and intermediate, like AWS's chain shape.
type CA struct {
	root, inter *x509.Certificate
	interKey    *ecdsa.PrivateKey // signs the documents' leaf certificates
}

// NewCA makes a root valid from a day ago for 30 years and an intermediate
// valid from a day ago for 30 days, so documents signed around now verify.
func NewCA() (*CA, error) {
	return NewCAAt(time.Now())
}

// NewCAAt is NewCA for a chain valid around the given time.
func NewCAAt(now time.Time) (*CA, error) {
	start := now.Add(-24 * time.Hour)
	rootKey, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		return nil, err
	}
	rootTmpl := caTemplate("test.nitro-enclaves", start, rootValidity)
	root, err := issue(rootTmpl, rootTmpl, &rootKey.PublicKey, rootKey)
	if err != nil {
		return nil, err
	}
	return withIntermediate(root, rootKey, start)
}

// caTemplate is a CA certificate template with the key usages of AWS's.
func caTemplate(cn string, start time.Time, validity time.Duration) *x509.Certificate {
	return &x509.Certificate{
		Subject:               pkix.Name{CommonName: cn, Organization: []string{"nsmtest"}},
		NotBefore:             start,
		NotAfter:              start.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
}

func issue(tmpl, parent *x509.Certificate, pub *ecdsa.PublicKey, signer *ecdsa.PrivateKey) (*x509.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	tmpl.SerialNumber = serial
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	if err != nil {
		return nil, fmt.Errorf("nsmtest: issue %s: %w", tmpl.Subject.CommonName, err)
	}
	return x509.ParseCertificate(der)
}

// Roots returns a pool holding only the test root.
func (c *CA) Roots() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(c.root)
	return p
}

// RootPEM returns the test root certificate in PEM, for processes (a test
// KMS, a test-only binary) that must trust it.
func (c *CA) RootPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.root.Raw})
}

// PEM returns what a Fake in another process needs to sign documents: the
// root and intermediate certificates and the intermediate's private key.
// The root's private key is not kept. For tests only: with it, anyone can
// make documents this CA's roots accept.
func (c *CA) PEM() ([]byte, error) {
	key, err := x509.MarshalPKCS8PrivateKey(c.interKey)
	if err != nil {
		return nil, err
	}
	var out []byte
	for _, b := range []*pem.Block{
		{Type: "CERTIFICATE", Bytes: c.root.Raw},
		{Type: "CERTIFICATE", Bytes: c.inter.Raw},
		{Type: "PRIVATE KEY", Bytes: key},
	} {
		out = append(out, pem.EncodeToMemory(b)...)
	}
	return out, nil
}

// ParseCA reads what PEM wrote.
func ParseCA(b []byte) (*CA, error) {
	var certs []*x509.Certificate
	var key any
	for {
		blk, rest := pem.Decode(b)
		if blk == nil {
			break
		}
		b = rest
		var err error
		switch blk.Type {
		case "CERTIFICATE":
			var c *x509.Certificate
			if c, err = x509.ParseCertificate(blk.Bytes); err == nil {
				certs = append(certs, c)
			}
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(blk.Bytes)
		default:
			err = fmt.Errorf("unexpected PEM block %q", blk.Type)
		}
		if err != nil {
			return nil, fmt.Errorf("nsmtest: parse CA: %w", err)
		}
	}
	ec, ok := key.(*ecdsa.PrivateKey)
	if len(certs) != 2 || !ok {
		return nil, fmt.Errorf("nsmtest: parse CA: want 2 certificates and an ECDSA key, got %d and %T", len(certs), key)
	}
	if !ec.PublicKey.Equal(certs[1].PublicKey) {
		return nil, fmt.Errorf("nsmtest: parse CA: the key is not the intermediate's")
	}
	return &CA{root: certs[0], inter: certs[1], interKey: ec}, nil
}

// leaf issues a document-signing certificate valid from now for three hours.
func (c *CA) leaf(now time.Time, moduleID string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	cert, err := issue(&x509.Certificate{
		Subject:               pkix.Name{CommonName: moduleID + ".test.nitro-enclaves", Organization: []string{"nsmtest"}},
		NotBefore:             now.Add(-3 * time.Second),
		NotAfter:              now.Add(leafValidity),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageContentCommitment,
		BasicConstraintsValid: true,
	}, c.inter, &key.PublicKey, c.interKey)
	return cert, key, err
}

// Fake is an nsm.Attester that signs documents with CA. PCRs overrides
// entries of the default set (PCR0 to PCR15, all zero, 48 bytes each, as a
// debug-mode enclave reports); ModuleID and Now default to a fixed module
// and time.Now.
type Fake struct {
	CA       *CA
	PCRs     map[int][]byte
	ModuleID string
	Now      func() time.Time
}

// payload is the attestation document payload in the NSM's field order.
type payload struct {
	ModuleID    string         `cbor:"module_id"`
	Digest      string         `cbor:"digest"`
	Timestamp   uint64         `cbor:"timestamp"`
	PCRs        map[int][]byte `cbor:"pcrs"`
	Certificate []byte         `cbor:"certificate"`
	CABundle    [][]byte       `cbor:"cabundle"`
	PublicKey   []byte         `cbor:"public_key"`
	UserData    []byte         `cbor:"user_data"`
	Nonce       []byte         `cbor:"nonce"`
}

// Attest returns a document nsm.Verify accepts with CA.Roots().
func (f *Fake) Attest(ctx context.Context, r nsm.Request) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if f.CA == nil {
		return nil, fmt.Errorf("nsmtest: Fake without a CA")
	}
	if err := r.Validate(); err != nil {
		return nil, err
	}
	now := time.Now()
	if f.Now != nil {
		now = f.Now()
	}
	id := f.ModuleID
	if id == "" {
		id = "i-0123456789abcdef0-enc0123456789abcdef"
	}
	pcrs := make(map[int][]byte, 16)
	for i := range 16 {
		pcrs[i] = make([]byte, 48)
	}
	for i, v := range f.PCRs {
		pcrs[i] = v
	}
	cert, key, err := f.CA.leaf(now, id)
	if err != nil {
		return nil, err
	}
	enc, err := cbor.EncOptions{Sort: cbor.SortCanonical, NilContainers: cbor.NilContainerAsNull}.EncMode()
	if err != nil {
		return nil, err
	}
	body, err := enc.Marshal(payload{
		ModuleID:    id,
		Digest:      "SHA384",
		Timestamp:   uint64(now.UnixMilli()),
		PCRs:        pcrs,
		Certificate: cert.Raw,
		CABundle:    [][]byte{f.CA.root.Raw, f.CA.inter.Raw},
		PublicKey:   r.PublicKey,
		UserData:    r.UserData,
		Nonce:       r.Nonce,
	})
	if err != nil {
		return nil, fmt.Errorf("nsmtest: encode payload: %w", err)
	}
	signer, err := cose.NewSigner(cose.AlgorithmES384, key)
	if err != nil {
		return nil, err
	}
	hdr := cose.Headers{Protected: cose.ProtectedHeader{cose.HeaderLabelAlgorithm: cose.AlgorithmES384}}
	return cose.Sign1Untagged(rand.Reader, signer, hdr, body, nil)
}
