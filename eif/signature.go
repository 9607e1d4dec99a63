package eif

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"hash"
	"math/big"
)

// The signature section, as nitro-cli writes it: the serde_cbor encoding
// of a list of PCR signatures (only PCR0 is ever signed), each a map
//
//	{"signing_certificate": <PEM bytes>, "signature": <COSE_Sign1 bytes>}
//
// where byte strings are CBOR arrays of integers (serde's Vec<u8>). The
// COSE_Sign1 (RFC 9052, untagged) carries a protected header {1: alg}
// with alg ES256, ES384 or ES512 (ECDSA on P-256, P-384, P-521), an empty
// unprotected map, the payload {"register_index": 0, "register_value":
// <PCR0>} (serde_cbor again) and the raw r||s signature.

// ErrBadSignature is wrapped by every signature verification failure.
var ErrBadSignature = errors.New("eif: bad signature")

// PCRSignature is one entry of the signature section.
type PCRSignature struct {
	// SigningCertificate is the PEM-encoded X.509 signing certificate.
	SigningCertificate []byte
	// Signature is the COSE_Sign1 over the PCR index and value.
	Signature []byte
}

// COSE algorithm identifiers (RFC 9053) for ECDSA.
const (
	algES256 = -7
	algES384 = -35
	algES512 = -36
)

// ParseSignatureSection decodes a signature section.
func ParseSignatureSection(b []byte) ([]PCRSignature, error) {
	v, err := cborDecode(b)
	if err != nil {
		return nil, err
	}
	arr, ok := v.([]any)
	if !ok || len(arr) == 0 {
		return nil, fmt.Errorf("%w: signature section is not a non-empty array", errCBOR)
	}
	out := make([]PCRSignature, 0, len(arr))
	for i, e := range arr {
		m, ok := e.([]cborPair)
		if !ok {
			return nil, fmt.Errorf("%w: signature %d is not a map", errCBOR, i)
		}
		var s PCRSignature
		for _, f := range []struct {
			key string
			dst *[]byte
		}{{"signing_certificate", &s.SigningCertificate}, {"signature", &s.Signature}} {
			raw, ok := cborLookup(m, f.key)
			if !ok {
				return nil, fmt.Errorf("%w: signature %d has no %s", errCBOR, i, f.key)
			}
			if *f.dst, ok = cborBytes(raw); !ok {
				return nil, fmt.Errorf("%w: signature %d %s is not bytes", errCBOR, i, f.key)
			}
		}
		out = append(out, s)
	}
	return out, nil
}

// parseCertPEM returns the first certificate in a PEM block.
func parseCertPEM(p []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(p)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("signing certificate is not a PEM CERTIFICATE")
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("signing certificate: %w", err)
	}
	return c, nil
}

// signingCertDER returns the DER signing certificate of the first (PCR0)
// signature, the bytes nitro-cli measures into PCR8.
func signingCertDER(section []byte) ([]byte, error) {
	sigs, err := ParseSignatureSection(section)
	if err != nil {
		return nil, err
	}
	c, err := parseCertPEM(sigs[0].SigningCertificate)
	if err != nil {
		return nil, err
	}
	return c.Raw, nil
}

// VerifySignature checks the PCR0 signature of a signed EIF: the
// COSE_Sign1 must verify with the signing certificate's ECDSA key and
// sign register 0 with the PCR0 recomputed from the file. It returns the
// signing certificate; checking its validity period and issuer is the
// caller's policy. Unsigned images fail with ErrBadSignature.
func (f *File) VerifySignature() (*x509.Certificate, error) {
	if f.Signature == nil {
		return nil, fmt.Errorf("%w: image is not signed", ErrBadSignature)
	}
	sigs, err := ParseSignatureSection(f.Signature)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadSignature, err)
	}
	cert, err := parseCertPEM(sigs[0].SigningCertificate)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadSignature, err)
	}
	pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("%w: signing key is %T, not ECDSA", ErrBadSignature, cert.PublicKey)
	}
	payload, err := verifyCOSESign1(sigs[0].Signature, pub)
	if err != nil {
		return nil, err
	}
	idx, val, err := parsePCRInfo(payload)
	if err != nil {
		return nil, fmt.Errorf("%w: payload: %w", ErrBadSignature, err)
	}
	if idx != 0 || string(val) != string(f.PCRs.PCR0) {
		return nil, fmt.Errorf("%w: signs PCR%d=%x, image has PCR0=%x", ErrBadSignature, idx, val, f.PCRs.PCR0)
	}
	return cert, nil
}

// algParams maps a curve to its COSE algorithm, hash and scalar size.
func algParams(c elliptic.Curve) (alg int64, h func() hash.Hash, ch crypto.Hash, size int, err error) {
	switch c {
	case elliptic.P256():
		return algES256, sha256.New, crypto.SHA256, 32, nil
	case elliptic.P384():
		return algES384, sha512.New384, crypto.SHA384, 48, nil
	case elliptic.P521():
		return algES512, sha512.New, crypto.SHA512, 66, nil
	}
	return 0, nil, 0, 0, fmt.Errorf("unsupported curve %v", c.Params().Name)
}

// sigStructure is the COSE Sig_structure for COSE_Sign1:
// ["Signature1", protected, external_aad (empty), payload].
func sigStructure(protected, payload []byte) []byte {
	b := cborHead(nil, 4, 4)
	b = cborTstr(b, "Signature1")
	b = cborBstr(b, protected)
	b = cborBstr(b, nil)
	return cborBstr(b, payload)
}

// verifyCOSESign1 verifies a COSE_Sign1 (tagged 18 or not) with pub and
// returns its payload.
func verifyCOSESign1(msg []byte, pub *ecdsa.PublicKey) ([]byte, error) {
	v, err := cborDecode(msg)
	if err != nil {
		return nil, fmt.Errorf("%w: COSE_Sign1: %w", ErrBadSignature, err)
	}
	if t, ok := v.(cborTag); ok {
		if t.num != 18 {
			return nil, fmt.Errorf("%w: COSE tag %d, want 18 (COSE_Sign1)", ErrBadSignature, t.num)
		}
		v = t.val
	}
	arr, ok := v.([]any)
	if !ok || len(arr) != 4 {
		return nil, fmt.Errorf("%w: COSE_Sign1 is not a 4-element array", ErrBadSignature)
	}
	protected, ok1 := arr[0].([]byte)
	_, ok2 := arr[1].([]cborPair)
	payload, ok3 := arr[2].([]byte)
	sig, ok4 := arr[3].([]byte)
	if !ok1 || !ok2 || !ok3 || !ok4 {
		return nil, fmt.Errorf("%w: COSE_Sign1 fields have the wrong types", ErrBadSignature)
	}
	wantAlg, newHash, _, size, err := algParams(pub.Curve)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadSignature, err)
	}
	pv, err := cborDecode(protected)
	if err != nil {
		return nil, fmt.Errorf("%w: protected header: %w", ErrBadSignature, err)
	}
	pm, _ := pv.([]cborPair)
	var alg any
	for _, p := range pm {
		if k, ok := p.key.(uint64); ok && k == 1 {
			alg = p.val
		}
	}
	if n, ok := alg.(cborNeg); !ok || -1-int64(n) != wantAlg {
		return nil, fmt.Errorf("%w: protected header alg %v does not match the %s key (COSE alg %d)", ErrBadSignature, alg, pub.Curve.Params().Name, wantAlg)
	}
	if len(sig) != 2*size {
		return nil, fmt.Errorf("%w: signature is %d bytes, want %d", ErrBadSignature, len(sig), 2*size)
	}
	h := newHash()
	h.Write(sigStructure(protected, payload))
	r, s := new(big.Int).SetBytes(sig[:size]), new(big.Int).SetBytes(sig[size:])
	if !ecdsa.Verify(pub, h.Sum(nil), r, s) {
		return nil, fmt.Errorf("%w: COSE_Sign1 signature does not verify", ErrBadSignature)
	}
	return payload, nil
}

// parsePCRInfo decodes {"register_index": i, "register_value": bytes}.
func parsePCRInfo(b []byte) (int64, []byte, error) {
	v, err := cborDecode(b)
	if err != nil {
		return 0, nil, err
	}
	m, ok := v.([]cborPair)
	if !ok {
		return 0, nil, fmt.Errorf("%w: PCR info is not a map", errCBOR)
	}
	iv, ok1 := cborLookup(m, "register_index")
	vv, ok2 := cborLookup(m, "register_value")
	idx, ok3 := iv.(uint64)
	val, ok4 := cborBytes(vv)
	if !ok1 || !ok2 || !ok3 || !ok4 || idx > 31 {
		return 0, nil, fmt.Errorf("%w: bad PCR info", errCBOR)
	}
	return int64(idx), val, nil
}

// Signer signs an EIF's PCR0 the way nitro-cli build-enclave
// --signing-certificate --private-key does.
type Signer struct {
	// CertificatePEM is the PEM X.509 certificate of Key; its DER form is
	// measured into PCR8.
	CertificatePEM []byte
	// Key is an ECDSA private key on P-256, P-384 or P-521 (for instance
	// an *ecdsa.PrivateKey, or a KMS- or HSM-backed crypto.Signer).
	Key crypto.Signer
}

// certDER checks the signer and returns its certificate's DER bytes.
func (s *Signer) certDER() ([]byte, error) {
	c, err := parseCertPEM(s.CertificatePEM)
	if err != nil {
		return nil, err
	}
	if s.Key == nil {
		return nil, errors.New("signer has no key")
	}
	kp, ok := s.Key.Public().(*ecdsa.PublicKey)
	cp, ok2 := c.PublicKey.(*ecdsa.PublicKey)
	if !ok || !ok2 || !kp.Equal(cp) {
		return nil, errors.New("signing key is not ECDSA or does not match the certificate")
	}
	return c.Raw, nil
}

// signatureSection signs pcr0 and encodes the signature section.
func (s *Signer) signatureSection(pcr0 []byte) ([]byte, error) {
	pub := s.Key.Public().(*ecdsa.PublicKey)
	alg, newHash, ch, size, err := algParams(pub.Curve)
	if err != nil {
		return nil, err
	}
	payload := cborHead(nil, 5, 2)
	payload = cborTstr(payload, "register_index")
	payload = cborInt(payload, 0)
	payload = cborTstr(payload, "register_value")
	payload = cborU8Array(payload, pcr0)

	protected := cborInt(cborHead(cborHead(nil, 5, 1), 0, 1), alg)
	h := newHash()
	h.Write(sigStructure(protected, payload))
	der, err := s.Key.Sign(rand.Reader, h.Sum(nil), ch)
	if err != nil {
		return nil, fmt.Errorf("signing PCR0: %w", err)
	}
	var rs struct{ R, S *big.Int }
	if rest, err := asn1.Unmarshal(der, &rs); err != nil || len(rest) != 0 {
		return nil, fmt.Errorf("signing PCR0: signer returned a malformed ECDSA signature")
	}
	sig := make([]byte, 2*size)
	rs.R.FillBytes(sig[:size])
	rs.S.FillBytes(sig[size:])

	cose := cborHead(nil, 4, 4)
	cose = cborBstr(cose, protected)
	cose = cborHead(cose, 5, 0)
	cose = cborBstr(cose, payload)
	cose = cborBstr(cose, sig)

	sec := cborHead(nil, 4, 1)
	sec = cborHead(sec, 5, 2)
	sec = cborTstr(sec, "signing_certificate")
	sec = cborU8Array(sec, s.CertificatePEM)
	sec = cborTstr(sec, "signature")
	sec = cborU8Array(sec, cose)
	return sec, nil
}
