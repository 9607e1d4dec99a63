// Package verity builds and checks dm-verity hash trees in userspace,
// byte-compatible with veritysetup (cryptsetup) and the kernel's dm-verity
// target, hash format version 1.
//
// # What and why
//
// An enclave's root filesystem image is served by its untrusted parent. The
// kernel's dm-verity target makes every block read from it provably the
// block that was built, by checking it against a Merkle tree whose root hash
// is part of the enclave's measurement. This package writes that tree at
// build time (no root, no device-mapper, no veritysetup needed) and checks
// it in userspace, so that imgbuild can run in CI and tests can run on
// machines without device-mapper.
//
// # On-disk format
//
// The data device is split into DataBlockSize blocks. Each data block's
// digest is H(salt || block). Digests are stored in hash blocks of
// HashBlockSize bytes, each digest in a slot padded with zeroes to the next
// power of two, so a hash block holds 2^k digests where k is the largest
// integer with 2^k * digestSize <= HashBlockSize. Level 0 holds the digests
// of the data blocks, level i+1 the digests of level i's hash blocks, up to
// a level that fits in one block; the root hash is the digest of that block.
// On the hash device the top level comes first and level 0 last, starting at
// the hash start block. With a superblock (veritysetup's default) the
// 512-byte verity superblock sits at HashOffset and the tree starts at the
// next hash block boundary after it; without one the tree starts at
// HashOffset. A single data block has no tree at all: the root hash is the
// digest of the block itself. These rules are those of cryptsetup's
// lib/verity/verity_hash.c and the kernel's drivers/md/dm-verity-target.c.
//
// # Use
//
// Format builds a tree (FormatFile for files, including the tree appended to
// the data file at a hash offset, the layout imgbuild ships as one block
// file) and returns Params, which marshal to JSON and render the dm-verity
// table line. Verify checks a whole image against a pinned root hash and
// names the first bad block. NewReader returns an io.ReaderAt that checks
// every block it returns, for userspace consumers of a verity image.
//
// Hashing runs in parallel across GOMAXPROCS workers and streams the data:
// memory is bounded by a few MiB per worker plus the digests of the level-0
// hash blocks (1/128 of the data's digests), never by the image size.
package verity
