// Package itest is the toolkit of tests that run inside the integration
// microVM (see package integration) or on a privileged host: capability
// checks that skip outside the VM but fail inside it, loop devices over
// files, and the artifact directory the host inspects after the run.
//
// In-VM tests live in ordinary _test.go files with the build constraint
// "integration && linux"; the harness finds them by that tag.
//
// Loop devices: the tests need block devices over files, and busybox's
// losetup would tie them to the VM's userland; a loop device is two ioctls
// (LOOP_CTL_GET_FREE, LOOP_CONFIGURE, Linux 5.8+) with golang.org/x/sys/unix.
package itest
