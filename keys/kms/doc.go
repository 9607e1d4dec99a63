// Package kms seals a run volume's key with AWS KMS so that KMS releases
// it only to an enclave whose attestation matches the key policy's PCRs.
//
// Sealer implements keys.Sealer. Every call makes a fresh RSA-2048 key,
// asks the Nitro Secure Module (nsm.Attester) for an attestation document
// carrying its SubjectPublicKeyInfo and a random nonce, and calls KMS with
// Recipient{AttestationDocument, RSAES_OAEP_SHA_256}: GenerateDataKey for
// a new volume (Seal), Decrypt of the stored blob for an existing one
// (Unseal). KMS then answers with CiphertextForRecipient, a CMS envelope
// only that RSA key opens (cms.Decrypt), instead of the plaintext; the
// data key never leaves the enclave, and the RSA key is zeroed after use.
// Both calls carry an encryption context binding the blob to the volume
// (its LUKS2 UUID and NBD export name), so a blob copied into another
// header does not decrypt.
//
// The sealed blob is a LUKS2 token of type "enclave-storage-kms" with the
// fields key_arn, ciphertext (the KMS CiphertextBlob, base64) and context;
// the enclave stores it bound to keyslot 0 and uses the 32-byte data key
// as that keyslot's passphrase.
//
// Failures name the key and the PCRs of the document sent (*Error), so an
// operator can compare them with the key policy: ErrRefused when KMS
// answers no (never retried), ErrUnreachable after Retry's bounded
// attempts with exponential backoff.
//
// NewClient builds the aws-sdk-go-v2 KMS client the enclave uses: every
// connection is dialled through a Dialer (vsock to the parent's
// forwarder), TLS ends in the enclave with ServerName
// kms.REGION.amazonaws.com and the root CAs built into the binary
// (BundledRoots), so neither DNS nor the parent is trusted. The parent's
// credentials sign the requests; they are not the security boundary, the
// attestation is.
package kms
