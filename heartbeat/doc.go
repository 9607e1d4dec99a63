// Package heartbeat is the enclave's "I am up" signal to nitro-cli.
//
// nitro-cli (aws-nitro-enclaves-cli, enclave_proc/resource_manager.rs)
// listens on vsock port 9000 (ENCLAVE_READY_VSOCK_PORT) before it starts
// the enclave and waits, bounded by its boot timeout, for the enclave's
// init to connect from inside, write one byte 0xB7 (HEART_BEAT) and read
// the same byte back. An enclave that never does so is terminated as
// failed to boot. The reference init (aws-nitro-enclaves-sdk-bootstrap
// init/init.c, enclave_ready) connects to CID 3 (VMADDR_CID_PARENT),
// writes 0xB7, reads one byte and dies unless it is 0xB7.
//
// Send is the enclave side, with a context and a timeout instead of the
// reference's blocking calls; Echo is the parent side as nitro-cli plays
// it, for tests that run without nitro-cli. Both take plain net.Conn
// values, so the transport (vsock in an enclave; TCP or UNIX sockets in
// unit tests) is the caller's choice.
package heartbeat
