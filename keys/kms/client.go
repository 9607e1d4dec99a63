package kms

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awskms "github.com/aws/aws-sdk-go-v2/service/kms"
	"golang.org/x/crypto/x509roots/fallback/bundle"
)

// Dialer opens a connection towards KMS; in an enclave, a vsock
// connection to the parent's forwarder.
type Dialer func(ctx context.Context) (net.Conn, error)

// requestTimeout bounds one KMS call; the Sealer's Retry repeats it.
const requestTimeout = 30 * time.Second

// NewClient returns a KMS client for region whose every connection is
// made by dial (the parent's forwarder) and whose TLS ends here, with
// ServerName host and the certificate checked against roots: no DNS, no
// trust in the parent. The SDK's own retries are off; Sealer.Retry
// retries.
func NewClient(region, host string, dial Dialer, roots *x509.CertPool, creds aws.CredentialsProvider) *awskms.Client {
	tr := &http.Transport{
		Proxy: nil,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return dial(ctx)
		},
		TLSClientConfig:     &tls.Config{ServerName: host, RootCAs: roots, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout: 10 * time.Second,
		ForceAttemptHTTP2:   false,
	}
	return awskms.New(awskms.Options{
		Region:       region,
		BaseEndpoint: aws.String("https://" + host),
		Credentials:  aws.NewCredentialsCache(creds),
		HTTPClient:   &http.Client{Transport: tr, Timeout: requestTimeout},
		Retryer:      aws.NopRetryer{},
	})
}

// BundledRoots returns the root CAs built into the binary
// (golang.org/x/crypto/x509roots/fallback's bundle, which includes the
// Amazon roots KMS's certificates chain to). The enclave has no system
// roots, and reads none from the parent.
func BundledRoots() (*x509.CertPool, error) {
	p := x509.NewCertPool()
	for c := range bundle.Roots() {
		cert, err := x509.ParseCertificate(c.Certificate)
		if err != nil {
			return nil, fmt.Errorf("kms: built-in root CA: %w", err)
		}
		if c.Constraint == nil {
			p.AddCert(cert)
		} else {
			p.AddCertWithConstraint(cert, c.Constraint)
		}
	}
	return p, nil
}

// maxCAFile bounds a CA file.
const maxCAFile = 1 << 20

// RootsFromFile reads a PEM file of root CAs.
func RootsFromFile(name string) (*x509.CertPool, error) {
	fi, err := os.Stat(name)
	if err != nil {
		return nil, fmt.Errorf("kms: CA file: %w", err)
	}
	if fi.Size() > maxCAFile {
		return nil, fmt.Errorf("kms: CA file %s: %d bytes, more than %d", name, fi.Size(), maxCAFile)
	}
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("kms: CA file: %w", err)
	}
	p := x509.NewCertPool()
	n := 0
	for blk, rest := pem.Decode(b); blk != nil; blk, rest = pem.Decode(rest) {
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("kms: CA file %s: %w", name, err)
		}
		p.AddCert(c)
		n++
	}
	if n == 0 {
		return nil, fmt.Errorf("kms: CA file %s holds no PEM certificate", name)
	}
	return p, nil
}
