// Package fstree is an in-memory filesystem tree: the hand-off type between
// flattening container image layers (package layer) and writing a read-only
// filesystem image (package erofs).
//
// A Tree holds metadata only. Regular-file content is a Content, which the
// producer can back by a spool file (FileRange), any io.ReaderAt
// (SectionContent) or memory (Bytes), so a multi-gigabyte tree costs memory
// proportional to its number of entries, not its size.
//
// Every directory entry points to an *Inode. Hard links are several
// directory entries pointing to the same *Inode; the link count is not
// stored but derived from the tree (see Tree.Links). Directories cannot be
// hard-linked.
//
// Paths are slash-separated and relative to the root of the tree; a leading
// slash is allowed, and paths are cleaned with path.Clean so "a/./b/../c" is
// "a/c" and ".." never climbs above the root. Callers that must reject
// escaping paths (untrusted tar entries) check before calling.
//
// Walk visits entries in byte-wise sorted name order, depth first, so two
// equal trees are always visited identically: that is what makes images
// written from a Tree reproducible.
//
// FromDir (Linux) reads a directory on disk into a Tree, and Diff compares
// two trees entry by entry, content and hard links included: together they
// let tests check an image against its source, whatever produced either.
//
// A Tree is not safe for concurrent mutation.
package fstree
