// Package e2e holds the end-to-end scenarios of issue 6: the real
// binaries (imgbuild, nbd-parent, nbd-enclave) run as processes inside the
// integration microVM (see package integration), parent and enclave
// talking over vsock loopback (CID 1) exactly as a parent instance and its
// enclave do:
//
//   - first launch: an image built by imgbuild from an OCI layout, a blank
//     run image created by nbd-parent; the application writes and fsyncs;
//   - second launch: the file and the image's files are there;
//   - a flipped byte in a file's data block reads as EIO, a wrong pinned
//     root hash refuses to mount;
//   - a wrong key is refused and leaves the run image unchanged;
//   - nbd-parent killed (SIGKILL) during writes and restarted: the next
//     launch opens the volume and the fsync'd data is intact;
//   - the read-only image export cannot be written from the enclave.
//   - TestKMS (issue 10): nbd-enclave built with the fakensm tag gets its
//     key from a fake KMS the test hosts on 127.0.0.1, through nbd-parent's
//     vsock forwarder and credentials server: the first launch formats
//     with a KMS data key, the second reopens, a changed PCR policy is
//     refused with the run image unchanged; it prints the unlock times as
//     "E2E-KMS-TIMING".
//   - TestControlStop (issue 13): a stop over the control channel (package
//     control, vsock CID 1 port 9100) reaches the application as SIGTERM,
//     the events come in order (hello, stopping, app-exited, down
//     clean=true), nbd-enclave exits 0 and the next launch finds what the
//     application wrote on SIGTERM; a stop before the application starts
//     cancels the launch.
//   - TestNitroCLI (issue 13): an EIF built in the VM (imgbuild --kernel
//     with the VM's kernel from the artifact directory, KernelFile) run by
//     the fake nitro-cli (integration/fake-nitro-cli): run-enclave's JSON,
//     describe-enclaves, the console, a stop over the control channel, and
//     terminate-enclave.
//
// The scenarios are behind the "integration && linux" build tags; each
// prints "SCENARIO name PASS|FAIL seconds" and the mount time as
// "E2E-TIMING mount_ms=... pbkdf_ms=...". The first launch's run image is
// left in the artifact directory (e2e/run.img), and an untagged host-side
// test runs cryptsetup luksDump on the newest one it finds.
//
// The first launch formats LUKS2 with the agent's default argon2id (the
// binary offers no cheaper setting, and that is the path under test); the
// tests then swap that keyslot for a cheap PBKDF2 one with package crypt,
// since argon2id with 64 MiB costs seconds per unlock under QEMU's TCG
// (3 to 15 s measured, depending on the host's load) and the KDF is not
// what the later scenarios test.
package e2e
