// Package nbdclient performs the client side of the NBD fixed-newstyle
// handshake, so that a connected socket can be handed to the Linux kernel
// NBD client (package nbdkernel) for the transmission phase.
//
// The kernel's NBD driver only speaks the transmission phase: userspace must
// dial the server, negotiate an export and learn its size and transmission
// flags first. That is all this package does. [Handshake] sends NBD_OPT_GO
// with the export name and asks for NBD_INFO_EXPORT and NBD_INFO_BLOCK_SIZE;
// a server that answers NBD_REP_ERR_UNSUP to NBD_OPT_GO (an old-style
// server) is asked again with NBD_OPT_EXPORT_NAME. Structured replies are
// never negotiated because the kernel client only understands simple
// replies, and TLS is not offered: in a Nitro enclave the only peer is the
// parent instance over vsock.
//
// Every length the server sends is bounded before anything is allocated
// (see [MaxReplyLength]), so a hostile or broken server cannot make the
// enclave allocate unbounded memory; replies are fuzzed in the tests.
//
// We wrote this small client ourselves because github.com/pojntfx/go-nbd
// could not be obtained for this build; the protocol subset we need is a few
// hundred lines (see https://github.com/NetworkBlockDevice/nbd/blob/master/doc/proto.md).
package nbdclient
