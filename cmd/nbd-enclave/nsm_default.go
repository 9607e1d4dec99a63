//go:build linux && !fakensm

package main

import "github.com/enclave-storage/enclave-storage/nsm"

// testAttester is nil in the default build: kms: keys use /dev/nsm.
func testAttester() (nsm.Attester, error) { return nil, nil }
