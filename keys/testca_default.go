//go:build !fakensm

package keys

// testCAOption is false in the default build: the kms: spec's ca= option,
// which replaces Amazon's roots for KMS's TLS certificate, is a test hook
// and exists only in builds with the fakensm tag. Configuration cannot
// turn it on in a production binary.
const testCAOption = false
