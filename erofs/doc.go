// Package erofs writes and reads EROFS filesystem images: the read-only
// root filesystem that imgbuild produces from a flattened container image
// (an fstree.Tree) and that the enclave mounts below dm-verity.
//
// # Why EROFS
//
// The image is read-only by construction (dm-verity would reject any write
// anyway), so a read-only filesystem fits: EROFS is in mainline Linux since
// 5.4, has no journal or allocation state to go stale, packs small files
// and directories next to their inodes, and its on-disk format is simple
// enough to write directly. Ownership, modes, device numbers and xattrs are
// just bytes we write, so building needs no root and no files on disk with
// the right owners. The alternative, ext4 via "mkfs.ext4 -d", copies a
// directory that must already carry the final ownership and device nodes,
// which needs root (or fakeroot tricks) and extra copies, and its output
// depends on tool versions and hash seeds unless carefully pinned.
// squashfs would work too but compresses by default, which costs
// decompression CPU inside the enclave for no integrity gain.
//
// # What Write produces
//
// Uncompressed images with 4096-byte blocks (the size dm-verity hashes):
// block 0 holds the superblock (at byte 1024, with a crc32c checksum,
// EROFS_FEATURE_COMPAT_SB_CHKSUM); the metadata area follows with every
// inode (compact 32-byte inodes when uid, gid, link count and size fit
// 16/16/16/32 bits and the mtime equals the build time, else extended
// 64-byte inodes), its inline xattrs (user., trusted., security. and POSIX
// ACL names) and, when it fits in the inode's block, the tail of its data
// (EROFS_INODE_FLAT_INLINE); then the data blocks of files, directories and
// symlinks (EROFS_INODE_FLAT_PLAIN for the whole-block part). Directory
// entries, including "." and "..", are sorted byte-wise within and across
// blocks, as the kernel's binary-search lookup requires. Hard links share
// one inode (one nid, so one st_ino).
//
// # Reproducibility
//
// The output depends only on the tree and Options: inodes are laid out in
// sorted depth-first order, directory entries and xattrs are sorted, the
// build time comes from Options, SOURCE_DATE_EPOCH or the newest mtime in
// the tree (never the clock), and the UUID, unless given, is derived from a
// SHA-256 over the metadata and the CRC-32C of every MiB of data.
//
// # Streaming
//
// Write makes a layout pass over the tree's metadata, then writes the
// image front to back through an io.WriterAt, reading each file's Content
// as it goes. Memory grows with the number of entries and not with file
// sizes, so multi-gigabyte trees write with bounded memory.
//
// # Reading
//
// Open and FS read uncompressed images (ours, or mkfs.erofs's without
// compression, including shared xattrs): lookup, stat, read, readlink,
// directory listing, xattrs and a cycle-safe Walk; FS is also an io/fs.FS
// (fs.ReadDirFS, fs.ReadFileFS) and FS.Tree returns the image as an
// fstree.Tree for fstree.Diff. Every read is checked
// against the image size, so hostile images produce errors, not panics or
// unbounded allocations. It exists for tests and for imgbuild's own
// checks; the kernel is the real reader.
//
// erofs-utils ships no library we could link without cgo, and no Go EROFS
// writer was available, so the format code here is our own, written from
// the kernel's fs/erofs/erofs_fs.h.
package erofs
