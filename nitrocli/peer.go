//go:build !fakenitro

package nitrocli

// PeerCID is the vsock context ID an enclave started with --enclave-cid
// requested has as a peer of the parent: requested itself. The parent
// binds the enclave's exports to it before the enclave exists, and
// expects run-enclave's EnclaveCID to be it.
func PeerCID(requested uint32) uint32 { return requested }
