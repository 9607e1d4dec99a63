// Package ext4 formats the run volume's ext4 filesystem in Go, so the
// enclave's ramdisk needs no mkfs.ext4 (nor the shared libraries it links).
//
// Format lays out an empty ext4 filesystem on a device given as an
// io.ReaderAt and io.WriterAt — in the enclave, the dm-crypt mapping of the
// run volume opened O_RDWR. The on-disk work is done by
// github.com/diskfs/go-diskfs (filesystem/ext4, MIT); this package chooses
// its parameters, checks the size, adds lost+found and counts what it
// writes. We evaluated the library against e2fsck -fn, dumpe2fs and the
// kernel (mount, write, fsync, unmount, e2fsck again) before adopting it
// rather than writing the layout ourselves.
//
// The layout, in the terms of the kernel's documentation
// (Documentation/filesystems/ext4/, "ext4 Data Structures and Algorithms"):
//
//   - 4096-byte blocks (blocks.rst): dm-crypt maps 4096-byte sectors, and
//     the kernel refuses a filesystem block smaller than the device's
//     logical sector. 32768 blocks per group (blockgroup.rst), sparse_super
//     backups in groups 0, 1 and powers of 3, 5 and 7, flex_bg packing the
//     bitmaps and inode tables of 8 groups (1 GiB) at the start of the
//     first, 64bit descriptors.
//   - Features (super.rst): has_journal, ext_attr, dir_index, filetype,
//     extent, 64bit, flex_bg, sparse_super, large_file, huge_file,
//     dir_nlink, extra_isize (256-byte inodes), metadata_csum with
//     metadata_csum_seed (crc32c over superblock, descriptors, bitmaps,
//     inodes, extent blocks and directory blocks, checksums.rst).
//     resize_inode is off: the run volume is never grown in place, and the
//     library cannot reserve descriptor blocks on 4 KiB-block filesystems
//     of a few groups.
//   - The journal is inode 8 (journal.rst), an internal jbd2 log with
//     checksum v3, clean (s_start 0: nothing to replay) and contiguous.
//     Its size is the library's: a 32nd of the filesystem between 4 and
//     128 MiB, where mke2fs's ext2fs_default_journal_size steps from
//     4 MiB (< 128 MiB) to 1 GiB (>= 128 GiB) and gives 64 MiB for 2–16
//     GiB volumes. The kernel replays it on the next mount after an
//     unclean stop, which is the enclave's whole fsck policy.
//   - One inode per 16 KiB, as mke2fs's default inode_ratio; no blocks
//     reserved for root (an application volume, not a system disk).
//   - The root directory (inode 2) and lost+found (inode 11, mode 0700,
//     where e2fsck reconnects orphans).
//
// The device sits under dm-crypt, so any block never written reads back as
// random bytes, not zeros. Every structure the kernel or e2fsck reads is
// therefore written explicitly — superblock and its backups, descriptors,
// both bitmaps of every group and all inode tables (no uninit_bg lazy
// initialisation, which would require trusting unwritten blocks) — and the
// tests pre-fill their images with random bytes before formatting.
//
// The first block, holding the primary superblock and its magic, is written
// last, after a sync, as mke2fs writes its superblock last: a format cut
// short leaves a device the enclave recognises as having no filesystem
// (ErrNoFilesystem in package enclave) instead of a half-made ext4 that the
// kernel would mount.
//
// The filesystem UUID is random unless Options.UUID gives one; the
// directory hash seed, the journal's UUID and the timestamps come from the
// library (random, and the current time), so two formats are not
// byte-identical even with the same UUID.
package ext4
