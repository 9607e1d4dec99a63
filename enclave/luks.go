package enclave

import (
	"github.com/enclave-storage/enclave-storage/crypt"
	"github.com/enclave-storage/enclave-storage/dm"
)

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

// runCryptTarget is OpenRun's dm-crypt mapping of vol's sectors on dev:
// the table cryptsetup open loads for a LUKS2 volume, with
// no_read_workqueue and no_write_workqueue (cryptsetup's
// --perf-no_read_workqueue, --perf-no_write_workqueue; kernel 5.9 or
// later). Without them every bio takes a hop through dm-crypt's kcryptd
// workqueue (and writes one more through its sorting thread) before it
// is encrypted or after it is decrypted; those hops exist to spread
// crypto over CPUs and to batch writes for rotating disks, and under an
// NBD device, where a request's latency is a round trip to the parent,
// they add a wake-up and a context switch to every request instead. Reads
// are decrypted in the NBD driver's receive worker, writes encrypted in
// the submitter's context.
func runCryptTarget(vol *crypt.Volume, dev string, sectors uint64) dm.CryptTarget {
	return dm.CryptTarget{
		Length:           sectors,
		Cipher:           vol.Cipher,
		Key:              vol.Key,
		IVOffset:         vol.IVTweak,
		Device:           dev,
		Offset:           vol.OffsetSectors(),
		SectorSize:       uint32(vol.SectorSize),
		NoReadWorkqueue:  true,
		NoWriteWorkqueue: true,
	}
}
