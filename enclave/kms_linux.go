//go:build linux

package enclave

import (
	"context"
	"crypto/x509"
	"fmt"
	"net"

	"github.com/mdlayher/vsock"

	"github.com/enclave-storage/enclave-storage/keys"
	"github.com/enclave-storage/enclave-storage/keys/kms"
	"github.com/enclave-storage/enclave-storage/nsm"
	"github.com/enclave-storage/enclave-storage/parentcreds"
)

// kmsSealer wires a kms: key: the NSM (cfg.Attester, else /dev/nsm, closed
// by undo), a KMS client that reaches KMS through the parent's vsock
// forwarder with TLS ending here, and the instance role's credentials
// from the parent.
func kmsSealer(spec keys.KMS, cfg Config, undo *Undo) (*kms.Sealer, error) {
	var roots *x509.CertPool
	var err error
	if spec.CAFile != "" {
		roots, err = kms.RootsFromFile(spec.CAFile)
	} else {
		roots, err = kms.BundledRoots()
	}
	if err != nil {
		return nil, err
	}
	att := cfg.Attester
	if att == nil {
		d, err := nsm.Open()
		if err != nil {
			return nil, fmt.Errorf("enclave: kms key %s needs the Nitro Secure Module: %w", spec.KeyARN, err)
		}
		undo.Push("close /dev/nsm", func(context.Context) error { return d.Close() })
		att = d
	}
	dial := func(port uint32) kms.Dialer {
		return func(ctx context.Context) (net.Conn, error) {
			c, err := vsock.DialContext(ctx, spec.CID, port, nil)
			if err != nil {
				return nil, fmt.Errorf("dialing the parent's vsock %d:%d: %w", spec.CID, port, err)
			}
			return c, nil
		}
	}
	creds := &parentcreds.Provider{Dial: dial(spec.CredentialsPort)}
	return &kms.Sealer{
		KeyARN: spec.KeyARN,
		KMS:    kms.NewClient(spec.Region, spec.Host(), dial(spec.ProxyPort), roots, creds),
		NSM:    att,
	}, nil
}
