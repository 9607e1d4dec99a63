package nsmtest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"time"
)

// CAFromPEM is a CA whose root is a fixed certificate and P-384 key (PEM
// blocks CERTIFICATE and PKCS#8 PRIVATE KEY), with a fresh intermediate
// valid from a day before now for 30 days. Test-only binaries embed such a
// root so that another process, a test hosting a fake KMS, can trust
// their documents before they start; unlike ParseCA's intermediate, which
// expires 30 days after it was made, a fixed root can be checked in.
func CAFromPEM(certPEM, keyPEM []byte, now time.Time) (*CA, error) {
	cb, _ := pem.Decode(certPEM)
	kb, _ := pem.Decode(keyPEM)
	if cb == nil || cb.Type != "CERTIFICATE" || kb == nil || kb.Type != "PRIVATE KEY" {
		return nil, errors.New("nsmtest: want a PEM CERTIFICATE and a PEM PRIVATE KEY (PKCS#8)")
	}
	root, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("nsmtest: root: %w", err)
	}
	k, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("nsmtest: root key: %w", err)
	}
	rootKey, ok := k.(*ecdsa.PrivateKey)
	if !ok || rootKey.Curve != elliptic.P384() || !rootKey.PublicKey.Equal(root.PublicKey) {
		return nil, errors.New("nsmtest: the key is not the root certificate's P-384 key")
	}
	return withIntermediate(root, rootKey, now.Add(-24*time.Hour))
}

// withIntermediate completes a CA with a fresh intermediate, valid from
// start for 30 days, issued by the root.
func withIntermediate(root *x509.Certificate, rootKey *ecdsa.PrivateKey, start time.Time) (*CA, error) {
	interKey, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		return nil, err
	}
	interTmpl := caTemplate("intermediate.test.nitro-enclaves", start, interValidity)
	interTmpl.MaxPathLenZero = true
	inter, err := issue(interTmpl, root, &interKey.PublicKey, rootKey)
	if err != nil {
		return nil, err
	}
	return &CA{root: root, inter: inter, interKey: interKey}, nil
}
