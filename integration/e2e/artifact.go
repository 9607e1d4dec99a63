package e2e

// What the in-VM scenarios leave for the host-side check.
const (
	// ArtifactRunImage is where, below the harness's artifact directory,
	// the first launch leaves its run image: the LUKS2 header and keyslots
	// (the first 16 MiB) for cryptsetup, and the encrypted ext4 the host
	// decrypts for e2fsck.
	ArtifactRunImage = "e2e/run.img"
	// RunKey is the run volume's key in the scenarios (a test key: the
	// host check proves cryptsetup unlocks the enclave-formatted header
	// with it).
	RunKey = "the e2e run volume key"
	// KernelFile is the VM's kernel, put in the artifact directory by
	// the harness for the scenarios that build an EIF (imgbuild --kernel).
	KernelFile = "vmlinuz"
)
