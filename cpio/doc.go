// Package cpio writes reproducible "newc" (SVR4, magic "070701") cpio
// archives, the format the Linux kernel unpacks as an initramfs, and reads
// them back (Reader: bounded, for imgbuild describe to list what an EIF's
// ramdisks carry).
//
// Nitro Enclaves boot from ramdisks only, and each ramdisk is measured into
// the enclave's PCRs, so the same inputs must give the same bytes. Writer
// is a low-level streaming encoder (one header, then its data, like
// archive/tar); Archive collects entries in memory and writes them sorted
// by name, with parent directories added, inode numbers assigned in that
// order starting at 1, one fixed modification time and owner 0:0 unless
// given, so an archive depends only on its contents.
//
// The kernel's initramfs unpacker (init/initramfs.c) needs each header and
// each file's data to start at a multiple of 4 bytes, names to be NUL
// terminated with namesize counting the NUL, and the archive to end with
// an entry named "TRAILER!!!". Writer enforces all three. Names are written
// relative ("etc/passwd", no leading "/" or "./"), as the kernel's own
// gen_init_cpio does.
//
// The standard library has no cpio package and the ones in the wild either
// only read, or take mtimes and inode numbers from the host; this one is
// small enough to own.
package cpio
