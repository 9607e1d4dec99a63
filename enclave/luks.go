package enclave

import "github.com/enclave-storage/enclave-storage/crypt"

// formatOptions is what OpenRun formats the run volume with: opts (from
// Config.LUKSKDF) or crypt's defaults, and, unless opts names a
// KDF, crypt.MachineKeyKDF for keys of crypt.MinMachineKeyLen bytes or more.
// Those come from a machine (kms:, random:, a key file) with full entropy,
// so boot spends no seconds and no memory in argon2; shorter keys are
// treated as passphrases and keep argon2id (crypt.DefaultKDF). Either way
// the header is one crypt.EnclavePolicy accepts when OpenRun reopens it.
func formatOptions(opts *crypt.FormatOptions, key []byte) *crypt.FormatOptions {
	var o crypt.FormatOptions
	if opts != nil {
		o = *opts
	}
	if o.KDF == (crypt.KDF{}) {
		o.KDF = crypt.DefaultKDF()
		if len(key) >= crypt.MinMachineKeyLen {
			o.KDF = crypt.MachineKeyKDF()
		}
	}
	return &o
}
