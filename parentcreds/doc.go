// Package parentcreds hands an enclave the parent instance's temporary AWS
// credentials over a socket (vsock in production), and reads them back on
// the enclave's side.
//
// An enclave has no network and no instance metadata service, yet its KMS
// requests must be signed (SigV4). The parent owns the instance role, so it
// serves the role's current credentials: Serve answers every connection with
// one JSON object and closes it,
//
//	{"AccessKeyId": "...", "SecretAccessKey": "...", "Token": "...",
//	 "Expiration": "2026-12-02T03:00:00Z", "Region": "us-east-1"}
//
// or {"Error": "..."} when the parent cannot get credentials itself.
// Provider is the enclave's client: an aws.CredentialsProvider that dials
// the parent for each Retrieve (wrap it in aws.NewCredentialsCache), reads at
// most MaxResponse bytes and checks the object before using it.
//
// The credentials are not the security boundary: anyone on the parent can
// use the role anyway. What keeps a data key from a modified enclave is the
// key policy's attestation condition (kms:RecipientAttestation:PCRn), which
// the parent cannot forge. A lying parent can only deny service.
package parentcreds
