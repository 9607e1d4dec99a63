// Package nbdkernel drives the Linux kernel NBD client through its generic
// netlink family "nbd" (include/uapi/linux/nbd-netlink.h): it attaches
// already-negotiated sockets to a /dev/nbdN device (NBD_CMD_CONNECT),
// replaces dead sockets (NBD_CMD_RECONFIGURE), detaches devices
// (NBD_CMD_DISCONNECT) and reports which devices are connected
// (NBD_CMD_STATUS).
//
// The kernel does not negotiate: the caller dials the server, runs the
// handshake (package nbdclient) and passes the socket's file descriptor with
// the export's size and transmission flags. The kernel takes its own
// reference to the socket during NBD_CMD_CONNECT, so the caller may close its
// descriptor afterwards. Netlink was chosen over the older ioctl interface
// (NBD_SET_SOCK, NBD_DO_IT) because it needs no thread parked in NBD_DO_IT,
// lets the kernel pick a free device, and is the only interface that can
// reconfigure a live device with a new connection.
//
// # vsock sockets
//
// Kernels carrying "nbd: restrict sockets to TCP and UDP" (mainline and its
// stable backports, including the Debian 6.1 kernel our integration VM
// boots) refuse any socket that is not TCP or a stream UNIX socket:
// NBD_CMD_CONNECT fails with EINVAL and the kernel logs "Unsupported
// socket: should be TCP or UNIX". A vsock connection to the parent is then
// bridged by a [Relay]: an AF_UNIX socket pair whose one end the kernel
// gets, the other copied to and from the vsock connection by two
// goroutines of the agent. Callers try the socket itself first and fall
// back to a Relay on EINVAL, so kernels without the restriction keep the
// zero-copy path.
//
// # Timeouts and reconnection
//
// [Config.Timeout] is the per-request I/O timeout (NBD_ATTR_TIMEOUT). When a
// request times out or the socket dies, the kernel marks the connection dead
// and, if [Config.DeadConnTimeout] (NBD_ATTR_DEAD_CONN_TIMEOUT) is non-zero,
// holds requests for that long waiting for userspace to supply a new socket
// with [Conn.Reconfigure]; it also multicasts NBD_CMD_LINK_DEAD on the
// "nbd_mc_group" group. Only once the dead-connection timeout expires do
// requests fail with EIO. The defaults used by the enclave agent
// ([DefaultTimeout] 30 s, [DefaultDeadConnTimeout] 120 s) let a parent-side
// nbd-parent restart (seconds) be bridged by redialing and reconfiguring,
// without the filesystems above ever seeing an I/O error, while a parent that
// is gone for good still surfaces as an error within a few minutes.
// [Watcher] delivers the NBD_CMD_LINK_DEAD events on a socket of its own.
//
// We use github.com/mdlayher/genetlink directly; github.com/pojntfx/go-nbd
// (which wraps the ioctl interface) was not obtainable for this build.
package nbdkernel
