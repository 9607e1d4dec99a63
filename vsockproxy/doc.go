// Package vsockproxy forwards connections from an enclave to one fixed TCP
// destination, the way AWS's vsock-proxy lets an enclave reach KMS.
//
// An enclave has no network. To call KMS it opens a vsock connection to its
// parent, which nbd-parent (or vsock-proxy) pumps to
// kms.REGION.amazonaws.com:443; TLS runs end to end between the enclave and
// KMS, so the parent sees only ciphertext. A Proxy has exactly one Target:
// the enclave cannot name another host, so the forwarder cannot be turned
// into a general way out of the parent (vsock-proxy reaches the same end
// with its allow-list of host:port pairs).
//
// Each accepted connection is dialled to Target and bytes are copied both
// ways; when one side finishes sending, the other side's write half is
// closed (half-close), so request/response protocols that signal the end
// with a FIN keep working. At most MaxConns connections are forwarded at
// once; more are closed at once and logged, so a runaway enclave cannot
// exhaust the parent's file descriptors. Every connection is logged when
// it ends (bytes each way, duration, error), and Metrics counts them.
package vsockproxy
