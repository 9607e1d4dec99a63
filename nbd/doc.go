// Package nbd is a Network Block Device server: it serves regular files (or
// block devices) as named NBD exports over any net.Listener — vsock from a
// Nitro Enclave's parent, TCP, or a unix socket.
//
// It speaks the fixed-newstyle handshake of the NBD protocol
// (https://github.com/NetworkBlockDevice/nbd/blob/master/doc/proto.md):
// NBD_OPT_GO, NBD_OPT_INFO (with NBD_INFO_EXPORT, NBD_INFO_NAME,
// NBD_INFO_DESCRIPTION and NBD_INFO_BLOCK_SIZE), NBD_OPT_LIST,
// NBD_OPT_ABORT and NBD_OPT_EXPORT_NAME, honouring NBD_FLAG_C_NO_ZEROES,
// and NBD_OPT_STRUCTURED_REPLY with NBD_OPT_LIST_META_CONTEXT and
// NBD_OPT_SET_META_CONTEXT for the one context base:allocation; every
// other option is answered with NBD_REP_ERR_UNSUP. In the transmission
// phase it implements READ, WRITE (with FUA), FLUSH, TRIM (a hole punch),
// WRITE_ZEROES (hole punch, or a zeroed allocated range with
// NBD_CMD_FLAG_NO_HOLE), DISC and, once base:allocation is selected,
// BLOCK_STATUS. The Linux kernel client, the one that matters here,
// negotiates none of this and gets simple replies on the unchanged fast
// path. Clients that negotiate structured replies (libnbd's nbdcopy and
// nbdinfo, qemu-img) get each read as one NBD_REPLY_TYPE_OFFSET_DATA
// chunk (no DF, which is not advertised), errors to reads and block
// status as NBD_REPLY_TYPE_ERROR chunks, and other commands simple
// replies, as the protocol allows. BLOCK_STATUS answers with the file's
// holes and data from lseek(2) SEEK_DATA/SEEK_HOLE, at most 1024 extents
// per reply and never past the request (one with NBD_CMD_FLAG_REQ_ONE),
// holes flagged NBD_STATE_HOLE|NBD_STATE_ZERO: backups and migrations of
// a mostly empty run image then copy its data, not its holes.
//
// Requests on one connection are executed concurrently (bounded by
// [Options.Workers] and a per-connection byte budget) and answered as they
// complete, possibly out of order. Reads whose data is already in the page
// cache skip the workers: the image is mapped read-only (mmap), and once
// mincore(2) says every page of a read is resident the connection's reader
// queues the reply header and the writer sends the data straight from the
// mapping, so the only copy is the kernel's into the socket (pread into a
// buffer, then send, made two); on unix sockets, sendfile(2) instead, whose
// page references the receiver copies from directly. Other reads go to
// workers, whose pread fills the cache, so the writer never stalls on
// storage. Writes to a regular file are serialized in user space: the
// kernel serializes buffered writes to an inode anyway, and waiting on
// its lock spins on the CPU where a mutex parks the goroutine. So a write
// without FUA is written by the reader itself when that lock is free:
// workers would add no parallelism, only hand-offs (one to four context
// switches per 4 KiB write; a quarter more CPU per GiB of 1 MiB writes).
// To a block device, which takes concurrent writes, only writes of up to
// 16 KiB are. All other requests go to workers. A worker's reply shares
// one pooled buffer between header and data, and replies that complete
// while another is being written
// are queued and sent together with one gathering sendmsg(2) (on other
// connections than TCP, unix and vsock sockets, one joined write), which
// under load turns many small replies into one system call. vsock
// connections get a 4 MiB receive buffer (SO_VM_SOCKETS_BUFFER_SIZE):
// the kernel's 256 KiB default is also the credit the client may send
// before we read, which a queue of 1 MiB writes exhausts at once.
// The kernel client keeps many requests in flight per connection; a
// server that handles them one at a time serialises every pread behind
// the previous reply. All connections to an export share one file
// descriptor, and FLUSH is an fdatasync of that descriptor, so a flush on
// any connection covers writes completed on every connection: this is what
// lets us advertise NBD_FLAG_CAN_MULTI_CONN for read-write exports too.
//
// An export may be bound to vsock peers ([Export.PeerCIDs]): a parent may
// run several enclaves, and without a binding any of them could read, or
// overwrite with an older copy, another's run image. The server reads the
// peer's context ID from the accepted connection's *vsock.Addr (set by
// the kernel, not claimed by the peer), and to any other peer the export
// does not exist: it is not listed, NBD_OPT_GO and NBD_OPT_INFO get
// NBD_REP_ERR_UNKNOWN (not NBD_REP_ERR_POLICY, which would confirm the
// name to another tenant) and NBD_OPT_EXPORT_NAME is hung up on, as for
// an unknown name; each refusal is logged with the peer's CID and counted
// in nbd_peer_refused_total. TCP and unix socket peers have no CID, and
// are refused bound exports: a port or a socket file's permissions say
// nothing about which enclave is calling.
//
// Hostile input is bounded: option payloads are limited to a few KiB,
// requests to [Options.MaxBlockSize] (32 MiB by default: larger reads fail
// with EINVAL, larger writes close the connection rather than read the
// payload), requests past the end of the export fail with EINVAL (ENOSPC
// for writes and write-zeroes) and never touch the file, bytes that do not
// parse as a request close the connection, and each handshake must finish
// within [Options.HandshakeTimeout].
//
// Why not a library: github.com/pojntfx/go-nbd, the obvious Go choice,
// could not be obtained for this build. It also handles the requests of a
// connection strictly one after another, which the kernel client's queue of
// in-flight requests punishes: BenchmarkSlowBackend (4 KiB reads, 32 in
// flight, 500µs of storage latency each) runs about 14 times faster with
// our default 16 workers than with one. The protocol subset we need is
// small, so we wrote the server here with the standard library,
// golang.org/x/sys/unix for fallocate, flock, mmap, mincore, sendfile,
// lseek, and client_golang for metrics.
package nbd
