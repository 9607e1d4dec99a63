// Package fakensm is the test Nitro Secure Module that nbd-enclave carries
// when built with the fakensm build tag (never in a default build, never
// selectable by configuration), and what the end-to-end tests' fake KMS
// trusts: a fixed P-384 test root (testdata/root.pem and its key, both
// public: this root proves nothing to anyone else) and fixed PCRs.
//
// The root is fixed because the enclave binary and the test that hosts
// the fake KMS are different processes: the test must know, before the
// enclave starts, which root and PCRs its key policy accepts.
package fakensm

import (
	"crypto/sha512"
	"crypto/x509"
	_ "embed"
	"encoding/pem"
	"fmt"
	"time"

	"github.com/enclave-storage/enclave-storage/nsm"
	"github.com/enclave-storage/enclave-storage/nsm/nsmtest"
)

var (
	//go:embed testdata/root.pem
	rootPEM []byte
	//go:embed testdata/root-key.pem
	rootKeyPEM []byte
)

// Attester returns a fake NSM signing with the fixed root (through a fresh
// intermediate) and reporting PCRs().
func Attester() (nsm.Attester, error) {
	ca, err := nsmtest.CAFromPEM(rootPEM, rootKeyPEM, time.Now())
	if err != nil {
		return nil, fmt.Errorf("fakensm: %w", err)
	}
	return &nsmtest.Fake{CA: ca, PCRs: PCRs()}, nil
}

// Roots returns a pool holding the fixed test root.
func Roots() *x509.CertPool {
	blk, _ := pem.Decode(rootPEM)
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		panic("fakensm: embedded root: " + err.Error()) // a build defect
	}
	p := x509.NewCertPool()
	p.AddCert(c)
	return p
}

// PCRs returns the fake enclave's PCR0, PCR1 and PCR2: SHA-384 of
// "enclave-storage fakensm PCRn", so they look like measurements and
// differ from the all-zero debug-mode values.
func PCRs() map[int][]byte {
	m := map[int][]byte{}
	for _, n := range []int{0, 1, 2} {
		h := sha512.Sum384(fmt.Appendf(nil, "enclave-storage fakensm PCR%d", n))
		m[n] = h[:]
	}
	return m
}
