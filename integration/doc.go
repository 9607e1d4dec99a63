// Package integration runs the kernel-level tests: tests that need
// device-mapper, NBD, vsock, loop devices and overlayfs, which this
// project's build machines do not offer (their kernel has none of those and
// cannot load modules).
//
// The harness boots a QEMU microVM (TCG, no KVM needed) with Debian's stock
// kernel, whose package it downloads once and caches under
// integration/.cache. The initramfs holds busybox, just the kernel modules
// the tests need, our commands and our test binaries, all static; its /init
// loads the modules, runs every test binary with -test.v and reports on the
// serial console in lines the host parses:
//
//	@@<token> RESULT <name> PASS|FAIL <seconds>
//	@@<token> INTEGRATION-DONE rc=<n>
//
// where token is a random string from the kernel command line, so test
// output cannot forge a result. Test binaries come from every package with
// test files behind the "integration" build tag; like under go test, each
// runs in a directory holding a copy of its package's testdata. They use
// package itest to require capabilities, attach loop devices and leave
// artifacts. Artifacts
// leave the VM through a 9p share (and virtio-blk drives), so the host can
// check them after the run.
//
// The same test binaries can instead run directly on a privileged Linux
// host or container (Run with Host mode), for machines that have the
// modules loaded.
//
// Driving apt-get, dpkg-deb, modprobe and QEMU means shelling out: they are
// the tools that fetch a Debian kernel, resolve module dependencies and
// emulate a machine, and none has a Go library equivalent.
//
// TestEIFBoot boots an EIF built by imgbuild instead: its own kernel,
// cmdline and ramdisks, with a test-only archive appended that plays the
// parent instance (ParentRamdisk, ExtractEIF, VM.Cmdline).
//
// Run it with scripts/integration.sh (make integration), or
//
//	go test -tags integration ./integration -v -timeout 25m [-host]
package integration
