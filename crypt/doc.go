// Package crypt reads and writes LUKS2 headers in pure Go, compatible with
// cryptsetup in both directions, so the enclave can format and unlock its
// encrypted run image without carrying cryptsetup.
//
// Format writes a complete LUKS2 header (both binary headers and JSON areas
// with their checksums, one keyslot with an argon2id or pbkdf2-sha256 KDF,
// AF-split key material encrypted with aes-xts-plain64, a pbkdf2-sha256
// digest and an aes-xts-plain64 data segment). Open validates both header
// copies (falling back to the secondary when the primary is damaged, as
// cryptsetup does, but never writing), tries each keyslot and returns a
// Volume: the volume key and everything a dm-crypt table needs. AddKey,
// RemoveKey and KillSlot rotate keys; Wipe destroys every keyslot so the
// data can never be decrypted again. AddToken, RemoveToken and
// FormatOptions.Tokens write LUKS2 tokens (JSON objects naming keyslots,
// as systemd-cryptenroll and cryptsetup's token plugins write them; the
// enclave's kms: provider keeps its KMS ciphertext in one), and ReadInfo
// returns them; crypt keeps their fields verbatim without interpreting
// them.
//
// Open accepts any header cryptsetup accepts, within cryptsetup's limits.
// That is right for a disk the caller owns. When someone else writes the
// header (the enclave's parent does), OpenWithPolicy checks a Policy first:
// cipher, key size, sector size, data offset and size, keyslot and token
// layout, digest size and cost, KDF type and cost, all before any KDF runs,
// so a hostile header can neither make the enclave allocate gigabytes of
// argon2 or spin for hours in PBKDF2, nor shift or resize the data it maps.
// EnclavePolicy is exactly what Format writes by default. A caller that
// needs the header before the key (its token says how to get the key)
// uses ReadWithPolicy and then CheckedHeader.Open: the header is read and
// checked once, so the device cannot serve another one to the unlock.
// PBKDF2 (keyslots
// and digests) checks ctx as it runs; x/crypto/argon2 cannot be
// interrupted, so after a cancelled ctx its goroutine finishes in the
// background with its memory, which only the policy bounds.
//
// Which KDF: a passphrase needs argon2id (DefaultKDF). A key a machine
// generated with full entropy (32 bytes or more: a KMS data key, a random
// key, a key file) gains nothing from stretching, so MachineKeyKDF enrolls
// it with PBKDF2-SHA256 at cryptsetup's minimum of 1000 iterations, as
// systemd-cryptenroll does for TPM2 and FIDO2 keys: unlocking then costs
// milliseconds and no memory.
//
// The bulk data is encrypted by the kernel's dm-crypt with the table
// Volume.Params renders. SectorCipher does the same transformation in
// userspace (for tests and for tools that must read or write a few sectors
// without device-mapper): aes-xts-plain64, where the IV is the little-endian
// 64-bit sector number counted in 512-byte units, as dm-crypt does when the
// table sets sector_size but not iv_large_sectors, which is what cryptsetup
// passes for LUKS2 and what Params renders.
//
// What this protects: the parent sees only ciphertext and cannot forge
// chosen plaintext. aes-xts-plain64 does not authenticate, though: the
// parent can replace a sector with garbage or with an older ciphertext of
// the same sector (rollback), and the enclave reads what decrypts from it.
//
// Only what this project needs is supported: aes-xts-plain64 segments and
// keyslots, LUKS1-style AF with 4000 stripes, pbkdf2/argon2i/argon2id KDFs
// and pbkdf2 digests, a single data segment, tokens stored but not
// interpreted, no online reencryption or integrity. Anything else is
// refused with ErrUnsupported rather than guessed at.
//
// The on-disk format follows the LUKS2 On-Disk Format Specification and
// cryptsetup's behaviour, checked by oracle tests against the cryptsetup
// binary in both directions. It is our own code rather than a binding to
// libcryptsetup: the enclave binaries are static and cgo-free, and owning
// the parser lets Open refuse everything outside the small subset above
// (the header comes from the parent, which the enclave does not trust).
// Keyslot areas use golang.org/x/crypto/xts; SectorCipher does XTS over
// 64-bit words instead, because x/crypto/xts works byte by byte and is
// several times slower on whole sectors, and on amd64 runs a sector's
// blocks through AES-NI (VAES on AVX-512 CPUs) many at a time in assembly,
// since crypto/aes offers only one block per call (sector_amd64.s).
package crypt
