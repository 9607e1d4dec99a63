// Package layer flattens container image layers — tar streams applied one
// over the other — into an fstree.Tree, the way a container runtime would
// unpack them onto a root filesystem, but without touching the real
// filesystem: nothing is created, chowned or mknod'ed, so it runs rootless
// and unprivileged.
//
// It follows the OCI image-spec layer rules: ".wh.NAME" deletes NAME from
// the lower layers, ".wh..wh..opq" hides everything the lower layers had in
// its directory, and whiteouts never hide what their own layer adds. Hard
// links point at an earlier path (of this or an earlier layer) and share
// the inode; symlinks, FIFOs, PAX "SCHILY.xattr." extended attributes,
// ownership, modes and modification times are kept. Missing
// parent directories are created (0755, root, zero mtime). A later entry
// replaces an earlier one, a directory with a file and the other way round;
// a directory entry over a directory changes its metadata only.
//
// Entry names are normalized as containerd and umoci do — leading "/" and
// "./" dropped, "a/../b" cleaned to "b" — and a parent path that is a
// symlink is followed inside the tree, never outside it. An entry or
// hard-link target whose name climbs above the root ("../etc/passwd") is
// rejected with an *EntryError wrapping ErrUnsafePath. GNU sparse entries
// are rejected too (ErrUnsupported): a few bytes of sparse map can declare
// terabytes of holes, and image builders do not write them.
//
// A base image is untrusted input to the build host and to the enclave.
// Limits bound every size and count a layer can make the flattener hold
// or write (xattr values, checked as the tar header is read, and their
// total; entries; per-file and total content, checked from the header
// before any content is read); going over one fails with a *LimitError
// inside the *EntryError naming layer and entry. Policy takes privileges
// away from the image: device nodes are dropped unless kept
// (KeepDevices), trusted.overlay.* and security.* attributes other than
// security.capability are always dropped, setuid bits and file
// capabilities are kept unless dropped (DropSetuid, DropCaps), as docker
// keeps them. Stats counts what was dropped.
//
// File content is appended to one spool file, and the tree refers to
// ranges of it, so memory grows with the number of entries, not with the
// image's size. The spool is unlinked as soon as it is created where the
// OS allows; Close releases it.
package layer
