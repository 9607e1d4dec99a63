//go:build fakensm

package keys

// testCAOption enables the kms: spec's ca= option in builds with the
// fakensm tag (the end-to-end tests' nbd-enclave), whose fake KMS has its
// own CA. See testca_default.go.
const testCAOption = true
