// Package parentd runs what the parent daemon serves from one
// configuration (package nbdconfig): the NBD exports on their listeners
// (package nbd), the vsock forwarders to KMS (package vsockproxy), the
// instance role's credentials (package parentcreds) and the Prometheus
// metrics endpoint, until its context is done; then it stops accepting,
// lets requests in flight finish, flushes every read-write export and
// closes the files.
//
// It is shared by nbd-parent's two modes: serving alone ("nbd-parent
// --export ...") and serving next to the enclave it supervises
// ("nbd-parent run", package supervisor), which adds its own health
// endpoint and gauges to the same HTTP server and registry.
package parentd
