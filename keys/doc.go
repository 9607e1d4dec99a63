// Package keys supplies the secret that unlocks an enclave's encrypted run
// image.
//
// A Provider returns the key for a named volume. The crypt package uses it as
// the LUKS2 passphrase: with cryptsetup-compatible keyslots, any byte string
// works, and a high-entropy key makes the keyslot's PBKDF cost a formality
// rather than the defence.
//
// Providers:
//
//   - Random: a fresh key from crypto/rand on every call. Nothing persists
//     it, so the run image can never be unlocked again once the enclave
//     stops: the caller must re-format the image on every launch. Use it
//     when the run image is scratch space (ephemeral, like tmpfs that
//     happens to live on the parent's disk).
//   - File: a key file. It refuses files that are not regular files or that
//     group or others may read or write, naming the file and its mode, so a
//     key is never silently taken from a file anyone can read.
//   - Env: an environment variable. Environments leak (/proc/PID/environ,
//     child processes, crash dumps): meant for tests and development.
//
// Parse builds a Provider from a short spec ("random:", "file:/etc/key",
// "env:NAME", "kms:arn:aws:kms:REGION:ACCOUNT:key/ID[,options]") so
// commands can take a --key flag.
//
// Sealed keys. A key that a third party releases only to an attested
// enclave does not fit Provider: a new volume needs a fresh key and a blob
// to store next to it, an existing volume needs that blob back. Sealer
// says so:
//
//	type Sealer interface {
//		TokenType() string
//		Seal(ctx, Binding) (key []byte, s Sealed, err error)
//		Unseal(ctx, Binding, Sealed) (key []byte, err error)
//	}
//
// Binding names the volume (its LUKS2 UUID and NBD export) so the blob is
// bound to it; Sealed is a LUKS2 token's type and fields, which the caller
// stores in the volume's header bound to the keyslot the key opens. Seal
// runs before the header exists (the caller picks the UUID first), so a
// refused Seal writes nothing.
//
// "kms:ARN" parses to KMS, which describes the key and how to reach KMS
// from the enclave (vsock ports of the parent's forwarder and credentials
// server, optional CA file); package keys/kms implements the Sealer (AWS
// KMS with a Nitro attestation document as the recipient). As a Provider,
// KMS only returns ErrSealedKey.
package keys
