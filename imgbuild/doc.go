// Package imgbuild is the "imgbuild build" pipeline: it turns a container
// image into what an enclave boots from.
//
// Build runs the steps in order, each an exported function so tests and
// other tools can run them alone:
//
//  1. OpenImage: read the image with package imgsrc (any transport,
//     platform chosen from an index);
//  2. Flatten: apply its layers with package layer into an fstree.Tree,
//     within Options.Limits (sizes and counts a hostile base image could
//     inflate; a *layer.LimitError names layer, entry and limit) and
//     Options.Policy (device nodes dropped by default, overlay and LSM
//     xattrs always, setuid and capabilities kept unless asked);
//  3. WriteFS: write the tree as an EROFS image (package erofs);
//  4. AppendVerity: append a dm-verity hash tree to the same file
//     (package verity), so rootfs.img is one file: filesystem, then the
//     verity superblock and tree at offset FSSize. Build hashes the tree
//     from the blocks WriteFS writes, as it writes them (erofs.Options.Tee,
//     verity.Builder), rather than reading the image back: the same bytes,
//     one pass;
//  5. WriteManifest: rootfs.verity.json — the verity parameters, the
//     filesystem size, where the image came from and how to run it;
//  6. WriteEIF, when a kernel is given: an enclave image file (package eif)
//     whose kernel command line and application ramdisk pin the root
//     hash, and pcrs.json with its measurements, and kms-key-policy.json,
//     KMS key-policy statements releasing the run volume's key only to an
//     enclave with those measurements and denying it to any other caller
//     (KeyPolicy). With KernelModules, the
//     bootstrap ramdisk carries the kernel modules nbd-enclave loads
//     (ModulesRamdisk, package kmod); EIFModules reads them back.
//
// Everything is reproducible: the same image and options give the same
// bytes. The filesystem and EIF timestamps come from SOURCE_DATE_EPOCH or,
// failing that, the image's creation time; the verity salt, unless given,
// is derived from the image's config digest (the same through every
// transport, see DeriveSalt), and the verity UUID from the
// EROFS image's content-derived UUID — never from a clock or random source.
//
// Outputs are written under temporary names in the output directory and
// renamed into place once complete, so a failed or interrupted build never
// leaves a half-written rootfs.img that looks finished.
package imgbuild
