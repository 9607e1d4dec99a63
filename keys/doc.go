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
// "env:NAME") so commands can take a --key flag.
//
// A provider that releases a key only to an attested enclave (AWS KMS with a
// Nitro attestation document bound to the enclave's PCRs) fits the same
// interface: Key would send the attestation document with the request and
// decrypt the ciphertext KMS returns. It is not written yet; it belongs in
// this package as another Provider and another Parse scheme.
package keys
