// Package kmsenv wires a kms.Sealer to a fake KMS (keys/kmstest) and a
// fake NSM (nsm/nsmtest) through the real aws-sdk-go-v2 client, TLS and
// all, for the tests of packages that unseal keys (keys/kms, enclave).
// It imports package testing, so it is internal: only tests use it.
package kmsenv

import (
	"bytes"
	"context"
	"crypto/x509"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/enclave-storage/enclave-storage/keys/kms"
	"github.com/enclave-storage/enclave-storage/keys/kmstest"
	"github.com/enclave-storage/enclave-storage/nsm/nsmtest"
)

// Region and KeyARN of the fake key.
const (
	Region = "eu-west-1"
	KeyARN = "arn:aws:kms:eu-west-1:111122223333:key/0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
)

// Env is a fake KMS whose key policy requires the fake NSM's PCRs.
type Env struct {
	KMS  *kmstest.Server
	NSM  *nsmtest.Fake
	PCRs map[int][]byte // the fake NSM's PCRs, which the policy requires
	// Dials counts the connections the Sealers made to the fake KMS.
	Dials atomic.Int64
}

// PCR returns a PCR value (48 bytes, SHA-384 size) filled with b.
func PCR(b byte) []byte { return bytes.Repeat([]byte{b}, 48) }

// New starts the fake KMS (closed at the end of the test) with a policy
// requiring PCR0, PCR1 and PCR2 of the fake NSM.
func New(t testing.TB) *Env {
	t.Helper()
	ca, err := nsmtest.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	pcrs := map[int][]byte{0: PCR(0xa0), 1: PCR(0xa1), 2: PCR(0xa2)}
	srv, err := kmstest.NewServer(kmstest.Options{Region: Region, KeyARN: KeyARN, Roots: ca.Roots(), RequiredPCRs: pcrs})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return &Env{KMS: srv, NSM: &nsmtest.Fake{CA: ca, PCRs: pcrs}, PCRs: pcrs}
}

// Sealer returns a Sealer for the fake key through the real KMS client,
// with retries r.
func (e *Env) Sealer(r kms.Retry) *kms.Sealer {
	addr := strings.TrimPrefix(e.KMS.URL(), "https://")
	return e.sealer(addr, r)
}

// UnreachableSealer returns a Sealer whose every connection is refused
// (a port nothing listens on), as when the parent's forwarder is down.
func (e *Env) UnreachableSealer(t testing.TB, r kms.Retry) *kms.Sealer {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return e.sealer(addr, r)
}

// SealerTrusting returns a Sealer that checks the fake KMS's TLS
// certificate against roots instead of the fake's own CA.
func (e *Env) SealerTrusting(roots *x509.CertPool, r kms.Retry) *kms.Sealer {
	return e.sealerWith(strings.TrimPrefix(e.KMS.URL(), "https://"), roots, r)
}

func (e *Env) sealer(addr string, r kms.Retry) *kms.Sealer {
	return e.sealerWith(addr, e.KMS.RootCAs(), r)
}

func (e *Env) sealerWith(addr string, roots *x509.CertPool, r kms.Retry) *kms.Sealer {
	dial := func(ctx context.Context) (net.Conn, error) {
		e.Dials.Add(1)
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr)
	}
	creds := aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
		return aws.Credentials{AccessKeyID: "AKIDEXAMPLE", SecretAccessKey: "secret", Source: "kmsenv"}, nil
	})
	return &kms.Sealer{
		KeyARN: KeyARN,
		KMS:    kms.NewClient(Region, e.KMS.Host(), dial, roots, creds),
		NSM:    e.NSM,
		Retry:  r,
	}
}

// FastRetry returns retries that are quick, for tests of the bounded
// retries. A function, not a variable: no test can change another's.
func FastRetry() kms.Retry {
	return kms.Retry{Attempts: 3, Base: time.Millisecond, Max: 4 * time.Millisecond}
}
