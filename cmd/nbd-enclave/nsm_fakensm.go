//go:build linux && fakensm

package main

import (
	"github.com/enclave-storage/enclave-storage/internal/fakensm"
	"github.com/enclave-storage/enclave-storage/nsm"
)

// testAttester is the test NSM of builds with the fakensm tag (the
// end-to-end tests): its documents are signed by a public test root, so
// no real KMS key policy can be satisfied by them.
func testAttester() (nsm.Attester, error) { return fakensm.Attester() }
