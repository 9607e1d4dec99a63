//go:build fakenitro

package nitrocli

// PeerCID is the vsock context ID an enclave started with --enclave-cid
// requested has as a peer of the parent. Built with the fakenitro tag,
// for integration/fake-nitro-cli, which runs the enclave inside the
// test VM: every vsock peer there is the loopback, CID 1 (VMADDR_CID_LOCAL),
// and the fake reports EnclaveCID 1 whatever --enclave-cid says.
func PeerCID(requested uint32) uint32 { return 1 }
