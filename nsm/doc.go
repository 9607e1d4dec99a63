// Package nsm asks the Nitro Secure Module for attestation documents and
// parses and verifies them.
//
// Inside a Nitro Enclave, /dev/nsm answers CBOR requests passed by ioctl
// (aws-nitro-enclaves-nsm-api, src/driver and src/api). The one request this
// package sends is Attestation: the NSM returns a COSE_Sign1 document (ES384,
// untagged) whose payload names the enclave (module_id, its PCRs, a
// timestamp) and carries the caller's public_key, user_data and nonce, signed
// by a per-enclave certificate that chains to the AWS Nitro Enclaves root.
// AWS KMS accepts such a document as a Recipient and encrypts its answer to
// the document's public key.
//
// Attester is the seam: Device speaks to the real /dev/nsm (Linux only);
// nsm/nsmtest.Fake signs documents with a test P-384 chain for tests.
//
// Parse checks a document's structure only, with the limits of the
// nsm-api's docs/attestation_process.md (sizes, mandatory fields, types).
// Verify also checks the certificate chain from the document's cabundle to
// the given roots at a given time and the ES384 signature over the COSE
// Sig_structure; AWSRoots holds the AWS Nitro Enclaves root (G1), taken from
// a real document's cabundle and pinned by its SHA-256 fingerprint.
package nsm
