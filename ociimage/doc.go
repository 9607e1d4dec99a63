// Package ociimage writes a small container image made of given files
// through containers/image, to any destination transport imgsrc can read
// from (oci:, oci-archive:, docker-archive:, docker-daemon:, docker://).
//
// It exists so that imgbuild can hand out one artefact, the enclave image
// file, the verity image and the parent daemon together, without a docker
// daemon, root or a build tool: the layers are tar streams generated here.
//
// Images are reproducible: the same Spec gives the same bytes, so the same
// manifest digest. Tar entries are sorted, owned by 0:0 with fixed modes
// and the Spec's timestamp, and layers are stored uncompressed (no
// compressor's version or level can change a digest; the largest file, an
// EROFS image, is mostly incompressible anyway). Each layer is generated
// twice, once to learn its digest and size and once to upload it, so no
// temporary copy of multi-gigabyte files is made.
//
// An image may sit on a base image ([Spec.Base]), whose layers are copied
// blob for blob, digests and compression unchanged (media types renamed
// between OCI and Docker where the destination needs it), each digest
// checked as it streams: imgbuild puts nbd-parent on an image that has
// nitro-cli installed.
package ociimage
