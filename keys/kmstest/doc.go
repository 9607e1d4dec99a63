// Package kmstest is a fake AWS KMS for tests: a TLS server speaking the
// AWS JSON 1.1 protocol of the two operations an enclave's kms: key
// provider calls, GenerateDataKey and Decrypt, with a Recipient (a Nitro
// attestation document) as KMS's cryptographic attestation support defines
// it. The real aws-sdk-go-v2 kms client talks to it unchanged: point
// BaseEndpoint at URL and trust RootCAs.
//
// What it enforces, as KMS does:
//
//   - SigV4: every request carries an AWS4-HMAC-SHA256 Authorization header
//     whose credential scope names the server's region and "kms", and an
//     X-Amz-Date; with Options.AccessKeys the signature itself is recomputed
//     and compared.
//   - The key: KeyId must name the server's one key (its ARN or key ID).
//   - The recipient: the attestation document is verified with nsm.Verify
//     against Options.Roots at Options.Now (chain, COSE signature, validity),
//     its public key must be RSA, and the key encryption algorithm must be
//     RSAES_OAEP_SHA_256. The answer then carries CiphertextForRecipient
//     (cms.Encrypt for the document's key) and no Plaintext.
//   - The key policy: with required PCRs set, a request is allowed only
//     with a recipient whose document's PCRs equal them all, as a policy
//     condition on kms:RecipientAttestation:PCR<n> would (PCR0 is what
//     kms:RecipientAttestation:ImageSha384 names); otherwise it is refused
//     with AccessDeniedException.
//   - The encryption context: CiphertextBlob is the data key sealed with
//     AES-256-GCM under a master key only the server holds, with the key
//     ARN and the canonical encryption context as additional data, so
//     Decrypt with another context, or a changed blob, fails with
//     InvalidCiphertextException.
//
// Errors are JSON bodies {"__type": NAME, "message": TEXT} with the status
// codes of KMS's service model (its httpError traits, as aws-sdk-go-v2's
// schemas carry them: 400 for nearly all, 404 for NotFoundException, 412 for
// DryRunOperationException, 500 for KMSInternalException; 400 for
// AccessDeniedException as KMS answers it), so SDK callers see the
// typed errors (*types.InvalidCiphertextException, ...) or, for
// AccessDeniedException which KMS's model does not declare, a
// smithy.APIError with that code. KMS does not document which code it
// answers for an attestation document that fails verification; this server
// answers ValidationException. It does not check the request time against
// its clock (KMS allows five minutes of skew).
//
// The ciphertext blob format is the server's own: real KMS blobs are opaque
// too. Only one key exists; SetRequiredPCRs and SetFailures change the
// policy and inject KMSInternalException while a test runs.
package kmstest
