package nsm

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/veraison/go-cose"
)

// Sentinel errors; Parse and Verify wrap one of them.
var (
	// ErrMalformed: the bytes are not an attestation document within the
	// limits of attestation_process.md.
	ErrMalformed = errors.New("nsm: malformed attestation document")
	// ErrCertificate: the document's certificate does not chain to the
	// roots at the given time, or is not fit to sign documents.
	ErrCertificate = errors.New("nsm: attestation certificate not trusted")
	// ErrSignature: the COSE_Sign1 signature does not verify.
	ErrSignature = errors.New("nsm: attestation signature invalid")
)

// Limits from attestation_process.md (section 2.2 and 3.2.2) and the driver.
const (
	// MaxDocumentSize bounds a whole COSE_Sign1 document: the payload is at
	// most 16 KiB; the protected header and signature add under 200 bytes.
	MaxDocumentSize = 16<<10 + 1024
	// MaxUserData bounds public_key, user_data and nonce, each. The CDDL
	// says 1024 for all three (section 2.2); real documents carry 1024-byte
	// user_data and nonce, so the 512 of section 3.2.2 is not applied.
	MaxUserData = 1024
	maxCert     = 1024
	maxCABundle = 8 // AWS's chains have 4; bounds chain building.
	maxPCRs     = 32
	// signatureSize is an ES384 signature, r || s (RFC 8152 8.1).
	signatureSize = 96
)

// Document is the payload of an attestation document.
type Document struct {
	ModuleID    string         // the enclave's NSM module, "i-…-enc…"
	Digest      string         // always "SHA384"
	Timestamp   time.Time      // when the NSM signed the document (millisecond precision)
	PCRs        map[int][]byte // locked PCRs by index
	Certificate []byte         // DER of the certificate that signed the document
	CABundle    [][]byte       // DER, root first: [root, intermediate…]
	PublicKey   []byte         // as requested; nil when absent
	UserData    []byte         // as requested; nil when absent
	Nonce       []byte         // as requested; nil when absent
}

// Request is what an enclave asks the NSM to put in a document. A nil field
// is left out; a non-nil empty one is included empty.
type Request struct {
	UserData, Nonce, PublicKey []byte
}

// Validate checks the request against the NSM's limits.
func (r Request) Validate() error {
	for _, f := range []struct {
		name string
		v    []byte
	}{{"user_data", r.UserData}, {"nonce", r.Nonce}, {"public_key", r.PublicKey}} {
		if len(f.v) > MaxUserData {
			return fmt.Errorf("nsm: %s of %d bytes exceeds %d", f.name, len(f.v), MaxUserData)
		}
	}
	return nil
}

// Attester returns attestation documents: a Device in an enclave, a fake in
// tests.
type Attester interface {
	// Attest returns the COSE_Sign1 document bytes.
	Attest(ctx context.Context, r Request) ([]byte, error)
}

// decMode decodes documents strictly: definite lengths, no duplicate keys,
// bounded nesting and counts.
var decMode = func() cbor.DecMode {
	m, err := cbor.DecOptions{
		DupMapKey:        cbor.DupMapKeyEnforcedAPF,
		IndefLength:      cbor.IndefLengthForbidden,
		TagsMd:           cbor.TagsForbidden,
		MaxNestedLevels:  8,
		MaxArrayElements: 64,
		MaxMapPairs:      64,
		UTF8:             cbor.UTF8RejectInvalid,
	}.DecMode()
	if err != nil {
		panic(err)
	}
	return m
}()

// CBOR major types (RFC 8949 3.1) and the simple value null.
const (
	majorUint  = 0
	majorBytes = 2
	majorText  = 3
	majorArray = 4
	majorMap   = 5
	cborNull   = 0xf6
)

func major(raw cbor.RawMessage) int { return int(raw[0] >> 5) }

// Parse decodes an attestation document: structure only, bounded, no
// signature check.
func Parse(doc []byte) (*Document, error) {
	d, _, err := parse(doc)
	return d, err
}

// parse decodes the COSE_Sign1 envelope and its payload.
func parse(doc []byte) (*Document, *cose.UntaggedSign1Message, error) {
	if len(doc) > MaxDocumentSize {
		return nil, nil, fmt.Errorf("%w: %d bytes, limit %d", ErrMalformed, len(doc), MaxDocumentSize)
	}
	// Check the outer shape before go-cose decodes it with its own options.
	var outer []cbor.RawMessage
	if err := decMode.Unmarshal(doc, &outer); err != nil {
		return nil, nil, fmt.Errorf("%w: COSE_Sign1: %v", ErrMalformed, err)
	}
	var msg cose.UntaggedSign1Message
	if err := msg.UnmarshalCBOR(doc); err != nil {
		return nil, nil, fmt.Errorf("%w: COSE_Sign1: %v", ErrMalformed, err)
	}
	alg, err := msg.Headers.Protected.Algorithm()
	if err != nil || alg != cose.AlgorithmES384 {
		return nil, nil, fmt.Errorf("%w: protected header algorithm %v (%v), want ES384", ErrMalformed, alg, err)
	}
	if len(msg.Headers.Protected) != 1 || len(msg.Headers.Unprotected) != 0 {
		return nil, nil, fmt.Errorf("%w: headers other than the algorithm", ErrMalformed)
	}
	if len(msg.Signature) != signatureSize {
		return nil, nil, fmt.Errorf("%w: signature of %d bytes, want %d", ErrMalformed, len(msg.Signature), signatureSize)
	}
	d, err := parsePayload(msg.Payload)
	if err != nil {
		return nil, nil, err
	}
	return d, &msg, nil
}

// fields of the payload; true where mandatory.
var fields = map[string]bool{
	"module_id": true, "digest": true, "timestamp": true, "pcrs": true,
	"certificate": true, "cabundle": true,
	"public_key": false, "user_data": false, "nonce": false,
}

func parsePayload(p []byte) (*Document, error) {
	if len(p) == 0 {
		return nil, fmt.Errorf("%w: empty payload", ErrMalformed)
	}
	var m map[string]cbor.RawMessage
	if err := decMode.Unmarshal(p, &m); err != nil {
		return nil, fmt.Errorf("%w: payload: %v", ErrMalformed, err)
	}
	for k, v := range m {
		mandatory, known := fields[k]
		if !known {
			return nil, fmt.Errorf("%w: unknown field %q", ErrMalformed, k)
		}
		if mandatory && v[0] == cborNull {
			return nil, fmt.Errorf("%w: %s is null", ErrMalformed, k)
		}
	}
	for k, mandatory := range fields {
		if _, ok := m[k]; mandatory && !ok {
			return nil, fmt.Errorf("%w: no %s", ErrMalformed, k)
		}
	}
	d := &Document{}
	var err error
	if d.ModuleID, err = text(m["module_id"], "module_id"); err != nil {
		return nil, err
	}
	if d.ModuleID == "" {
		return nil, fmt.Errorf("%w: empty module_id", ErrMalformed)
	}
	if d.Digest, err = text(m["digest"], "digest"); err != nil {
		return nil, err
	}
	if d.Digest != "SHA384" {
		return nil, fmt.Errorf("%w: digest %q, want SHA384", ErrMalformed, d.Digest)
	}
	if major(m["timestamp"]) != majorUint {
		return nil, fmt.Errorf("%w: timestamp is not an unsigned integer", ErrMalformed)
	}
	var ms uint64
	if err := decMode.Unmarshal(m["timestamp"], &ms); err != nil || ms == 0 || ms > 1<<53 {
		return nil, fmt.Errorf("%w: timestamp %d", ErrMalformed, ms)
	}
	d.Timestamp = time.UnixMilli(int64(ms)).UTC()
	if d.PCRs, err = pcrs(m["pcrs"]); err != nil {
		return nil, err
	}
	if d.Certificate, err = bytesField(m["certificate"], "certificate", 1, maxCert); err != nil {
		return nil, err
	}
	if d.CABundle, err = cabundle(m["cabundle"]); err != nil {
		return nil, err
	}
	for _, f := range []struct {
		name string
		dst  *[]byte
		min  int
	}{{"public_key", &d.PublicKey, 1}, {"user_data", &d.UserData, 0}, {"nonce", &d.Nonce, 0}} {
		raw, ok := m[f.name]
		if !ok || raw[0] == cborNull {
			continue
		}
		if *f.dst, err = bytesField(raw, f.name, f.min, MaxUserData); err != nil {
			return nil, err
		}
	}
	return d, nil
}

func text(raw cbor.RawMessage, name string) (string, error) {
	var s string
	if major(raw) != majorText {
		return "", fmt.Errorf("%w: %s is not a text string", ErrMalformed, name)
	}
	if err := decMode.Unmarshal(raw, &s); err != nil {
		return "", fmt.Errorf("%w: %s: %v", ErrMalformed, name, err)
	}
	return s, nil
}

func bytesField(raw cbor.RawMessage, name string, lo, hi int) ([]byte, error) {
	if major(raw) != majorBytes {
		return nil, fmt.Errorf("%w: %s is not a byte string", ErrMalformed, name)
	}
	var b []byte
	if err := decMode.Unmarshal(raw, &b); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrMalformed, name, err)
	}
	if len(b) < lo || len(b) > hi {
		return nil, fmt.Errorf("%w: %s of %d bytes, want %d to %d", ErrMalformed, name, len(b), lo, hi)
	}
	if b == nil {
		b = []byte{}
	}
	return b, nil
}

func pcrs(raw cbor.RawMessage) (map[int][]byte, error) {
	if major(raw) != majorMap {
		return nil, fmt.Errorf("%w: pcrs is not a map", ErrMalformed)
	}
	var m map[uint64]cbor.RawMessage
	if err := decMode.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("%w: pcrs: %v", ErrMalformed, err)
	}
	if len(m) < 1 || len(m) > maxPCRs {
		return nil, fmt.Errorf("%w: %d PCRs, want 1 to %d", ErrMalformed, len(m), maxPCRs)
	}
	out := make(map[int][]byte, len(m))
	for i, v := range m {
		if i >= maxPCRs {
			return nil, fmt.Errorf("%w: PCR index %d", ErrMalformed, i)
		}
		b, err := bytesField(v, fmt.Sprintf("PCR%d", i), 32, 64)
		if err != nil {
			return nil, err
		}
		if n := len(b); n != 32 && n != 48 && n != 64 {
			return nil, fmt.Errorf("%w: PCR%d of %d bytes", ErrMalformed, i, n)
		}
		out[int(i)] = b
	}
	return out, nil
}

func cabundle(raw cbor.RawMessage) ([][]byte, error) {
	if major(raw) != majorArray {
		return nil, fmt.Errorf("%w: cabundle is not an array", ErrMalformed)
	}
	var a []cbor.RawMessage
	if err := decMode.Unmarshal(raw, &a); err != nil {
		return nil, fmt.Errorf("%w: cabundle: %v", ErrMalformed, err)
	}
	if len(a) < 1 || len(a) > maxCABundle {
		return nil, fmt.Errorf("%w: cabundle of %d certificates, want 1 to %d", ErrMalformed, len(a), maxCABundle)
	}
	out := make([][]byte, len(a))
	for i, c := range a {
		b, err := bytesField(c, fmt.Sprintf("cabundle[%d]", i), 1, maxCert)
		if err != nil {
			return nil, err
		}
		out[i] = b
	}
	return out, nil
}

// Verify parses doc and checks, as attestation_process.md section 3 says,
// that its certificate chains through the cabundle to one of roots at time
// at, is fit to sign (digitalSignature, not a CA, a P-384 key), and signed
// the document (ES384 over the COSE Sig_structure with empty external AAD).
// The roots alone are trusted: cabundle[0] is only a candidate path element.
func Verify(doc []byte, roots *x509.CertPool, at time.Time) (*Document, error) {
	if roots == nil {
		return nil, fmt.Errorf("%w: no roots", ErrCertificate)
	}
	d, msg, err := parse(doc)
	if err != nil {
		return nil, err
	}
	leaf, err := x509.ParseCertificate(d.Certificate)
	if err != nil {
		return nil, fmt.Errorf("%w: leaf: %v", ErrCertificate, err)
	}
	inter := x509.NewCertPool()
	for i, der := range d.CABundle {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("%w: cabundle[%d]: %v", ErrCertificate, i, err)
		}
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inter,
		CurrentTime:   at,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	}); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCertificate, err)
	}
	if leaf.IsCA || leaf.KeyUsage&x509.KeyUsageDigitalSignature == 0 {
		return nil, fmt.Errorf("%w: leaf is a CA or lacks digitalSignature", ErrCertificate)
	}
	pub, ok := leaf.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P384() {
		return nil, fmt.Errorf("%w: leaf key is not ECDSA P-384", ErrCertificate)
	}
	v, err := cose.NewVerifier(cose.AlgorithmES384, pub)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCertificate, err)
	}
	if err := msg.Verify(nil, v); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrSignature, err)
	}
	return d, nil
}

// EqualPCRs reports whether two PCR sets hold the same indexes and values.
func EqualPCRs(a, b map[int][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i, v := range a {
		w, ok := b[i]
		if !ok || !bytes.Equal(v, w) {
			return false
		}
	}
	return true
}
