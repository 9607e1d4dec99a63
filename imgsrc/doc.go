// Package imgsrc reads a container image — its configuration and its layers
// as uncompressed tar streams, in order — from wherever the build finds it: a
// local docker daemon, a registry, a docker-archive or oci-archive tarball, or
// an OCI layout directory.
//
// It is a thin layer over github.com/containers/image/v5, using the same
// transport syntax as skopeo and podman ("oci-archive:app.tar",
// "docker://registry.example.com/app:1"). A reference without a transport ("app:latest")
// means the local docker daemon first and a registry second, as docker users
// expect.
//
// Only the five transports imgbuild needs are imported (docker,
// docker-archive, docker-daemon, oci-archive, oci) rather than
// transports/alltransports, and the copy and signature packages are avoided:
// those pull in containers/storage's graph drivers and gpgme, which need cgo.
// A few utility packages of containers/storage (pkg/archive for
// oci-archive extraction, pkg/homedir, pkg/lockfile...) are still linked;
// none is a graph driver, and with CGO_ENABLED=0 all build as pure Go.
// Blobs are fetched with ImageSource.GetBlob and their digests checked here
// — both the blob's digest from the manifest and, after decompression, the
// diff ID from the image configuration — because GetBlob does not verify
// what a transport hands back.
package imgsrc
