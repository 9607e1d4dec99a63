// Package enclave is the mount agent that runs inside the enclave (as
// /init, from the measured application ramdisk) and turns two NBD exports
// served by the parent over vsock into the application's root filesystem.
//
// Run performs, in order, each step pushing its reversal on an Undo stack:
//
//  1. LoadPinned: the verity parameters from
//     /etc/enclave-storage/verity.json, accepted only if their root hash
//     equals enclave_storage.verity_root= on the kernel command line (both
//     are measured into the PCRs; see package eif). The configuration comes
//     from /etc/enclave-storage/config.json (LoadConfig, Config).
//  2. AttachExport, twice: dial the parent (vsock CID 3 by default),
//     negotiate the export in userspace (package nbdclient) and hand the
//     socket to the kernel NBD client over generic netlink (package
//     nbdkernel), giving /dev/nbdN. Kernels that refuse vsock sockets for
//     NBD (EINVAL, "Unsupported socket: should be TCP or UNIX") get a UNIX
//     socket pair bridged to the vsock connection (nbdkernel.Relay). A
//     goroutine (Reconnect) watches NBD_CMD_LINK_DEAD and redials a dead
//     export within the dead-connection timeout.
//  3. OpenVerity: dm-verity over the image device with the pinned
//     parameters (package dm); reading the first block proves the image
//     matches the pinned root, else ErrRootHashMismatch. The erofs inside is
//     mounted read-only at /mnt/lower.
//  4. OpenRun: the run device is classified (ClassifyRun). Blank (no LUKS
//     signature where a LUKS2 header may start, the first MiB zero, and 64
//     sample blocks spread over the whole device zero): format LUKS2
//     (package crypt) with the key from the key provider (package keys),
//     stamp the sample blocks of the data area with random bytes
//     (StampRun), map it with dm-crypt, and write ext4 on the mapping in Go
//     (Mkfs, package ext4: journal, extents, metadata_csum, sized to the
//     device), so the ramdisk carries no mkfs.ext4. A zeroed header over a
//     data area holding data is ErrTamperedRun, never formatted. LUKS: unlock; a key
//     that opens no keyslot is ErrWrongKey and the device is never
//     reformatted. Anything else is ErrForeignRun. An unlocked volume
//     without an ext4 superblock (a first launch cut short between LUKS and
//     ext4) is ErrNoFilesystem, again without reformatting. Ephemeral
//     configurations (random: keys) format on every launch. The ext4
//     filesystem is mounted at /mnt/upper; its journal is replayed by the
//     kernel on mount, which is the whole fsck policy. A kms: key is
//     sealed in the header instead (keys.Sealer, package keys/kms): a blank
//     volume gets a UUID, a KMS data key sealed to it and the export, and
//     a header carrying the blob as an "enclave-storage-kms" token on
//     keyslot 0; a LUKS volume must pass crypt.EnclavePolicy and hold that
//     token (else ErrNoToken), whose blob KMS decrypts for this attested
//     enclave only. A refusal leaves the volume untouched.
//  5. An overlay of /mnt/lower under /mnt/upper/root (work dir
//     /mnt/upper/work) is mounted at /mnt/root with /dev, /proc and /sys
//     bound in, and the application (Config.App, the image's entrypoint,
//     cmd, env, working directory and user) runs chrooted in it as a child
//     (package overlay explains why chroot and why a child).
//  6. When the application exits or ctx is cancelled (SIGTERM to the
//     agent: the application gets SIGTERM, then SIGKILL after StopGrace),
//     the stack unwinds: sync, unmount the binds, the overlay, ext4 and
//     erofs, remove the dm-crypt and dm-verity targets, disconnect both NBD
//     devices. The run image is left clean.
//
// The parent stops the application over the control channel (package
// control, StartControl, Config.Control, vsock port 9100 by default): a
// stop request cancels Run's context as SIGTERM does, with a *StopRequest
// as its cause, whose grace period may shorten (never lengthen)
// Config.StopGrace. Only the configured parent's CID may connect. A stop
// before the application runs cancels the launch: Run unwinds what it set
// up and returns nil. The listener reports the application's exit status
// (Config.AppExited) and, after teardown, the end (Control.Down).
//
// As PID 1 (an EIF's /init), cmd/nbd-enclave first runs InitSystem (the
// Nitro reference init's mounts, links, cgroups, console and PATH), then
// Heartbeat (nitro-cli's boot heartbeat, package heartbeat), then Run, and
// ends with Reboot, as the reference init does.
//
// Every number the parent serves is bounded before use (CheckExport,
// nbdclient.MaxExportSize, the LUKS segment geometry): ErrBadGeometry.
//
// The userspace parts (configuration, pinning, the blank rule, the undo
// stack) build everywhere; the steps that touch the kernel are Linux only.
package enclave
