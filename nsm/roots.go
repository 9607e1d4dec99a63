package nsm

import (
	"crypto/sha256"
	"crypto/x509"
	_ "embed"
	"encoding/hex"
	"encoding/pem"
	"fmt"
)

// awsRootPEM is the AWS Nitro Enclaves root (G1), CN=aws.nitro-enclaves,
// valid 2019-10-28 to 2049-10-28, as cabundle[0] of a real attestation
// document carries it.
//
//go:embed aws-nitro-enclaves-root-g1.pem
var awsRootPEM []byte

// AWSRootFingerprint is the SHA-256 of the AWS Nitro Enclaves root (G1)
// certificate's DER, as AWS publishes it.
const AWSRootFingerprint = "641a0321a3e244efe456463195d606317ed7cdcc3c1756e09893f3c68f79bb5b"

// AWSRoots returns a pool holding the AWS Nitro Enclaves root (G1), the
// trust anchor of documents from real NSMs in the commercial partitions.
func AWSRoots() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(awsRoot())
	return p
}

// awsRoot parses the embedded root and checks its pinned fingerprint; the
// embedded file is part of the binary, so a mismatch is a build defect.
func awsRoot() *x509.Certificate {
	b, _ := pem.Decode(awsRootPEM)
	if b == nil {
		panic("nsm: embedded AWS root is not PEM")
	}
	sum := sha256.Sum256(b.Bytes)
	if hex.EncodeToString(sum[:]) != AWSRootFingerprint {
		panic(fmt.Sprintf("nsm: embedded AWS root has fingerprint %x", sum))
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		panic("nsm: embedded AWS root: " + err.Error())
	}
	return c
}
