// Package supervisor is the parent's whole job in one process ("nbd-parent
// run"): serve the enclave's block devices, start the enclave, watch it
// until it ends, and stop it cleanly when asked.
//
// # Life cycle
//
//  1. The data directory (a volume, /var/lib/enclave by default) holds the
//     run image, run.img: created sparse at the run size on first start,
//     reused afterwards, refused if it has another size, and locked
//     (flock) while served, as plain nbd-parent does (nbd.OpenFile).
//  2. The exports are served before the enclave starts (package parentd):
//     "image", the verity image rootfs.img next to the EIF, read-only, and
//     "run", the run image, both bound to the enclave's CID. The CID is the
//     one we ask nitro-cli for (--enclave-cid), known before the enclave
//     exists, so no other vsock peer is ever served them. If nitro-cli
//     reports another CID, the supervisor does not rebind: the enclave
//     may already have been refused its exports by then, and a rebind would
//     open a window in which the wrong peer holds them. It terminates the
//     enclave and fails (exit status 1), naming both CIDs. (The CID a
//     peer has is nitrocli.PeerCID of the requested one: itself, or with
//     the fakenitro build tag, used with the integration VM's fake
//     nitro-cli, the vsock loopback CID 1 every enclave there has.)
//  3. nitro-cli run-enclave (package nitrocli) starts it; in debug mode
//     nitro-cli console streams its console to stdout.
//  4. The supervisor watches it: describe-enclaves every PollInterval, and
//     the control channel to nbd-enclave (package control, vsock port
//     9100), which reports "app-exited" and "down" (teardown finished).
//  5. On stop (SIGTERM or SIGINT, the context given to Run): a stop request
//     over the control channel with the grace period; nbd-enclave sends
//     SIGTERM to the application, waits, SIGKILLs it, unmounts and
//     disconnects, and reports "down". The supervisor waits for that up to
//     grace + StopMargin; nitro-cli terminate-enclave follows in every case
//     where the enclave is still listed afterwards.
//  6. The NBD server then stops: requests in flight finish, the run image
//     is flushed (fdatasync) and unlocked.
//
// # Exit status (Result.ExitCode)
//
//	0    the application exited 0 and the teardown was clean, or a stop
//	     was requested and the enclave reported a clean "down"
//	N    the application exited by itself with status N (1-255) and the
//	     teardown was clean (N collides with the codes below for 1-4:
//	     the last log line, "enclave ended", says which)
//	1    nbd-parent failed: data directory, run image, exports, nitro-cli
//	     run-enclave, a CID other than the one asked for, serving
//	2    bad usage or configuration (flags, environment, a missing EIF
//	     or rootfs.img, memory below nitro-cli's floor), before anything
//	     started
//	3    not a clean stop: no clean "down" within grace + margin (the
//	     enclave was terminated), or "down" reporting a failed teardown
//	4    the enclave vanished (no longer listed by describe-enclaves)
//	     without a "down" event: a crash, or terminated by someone else
//
// # Health and metrics
//
// On the metrics address, next to nbd-parent's Prometheus metrics:
// /healthz answers 200 "running" while the enclave runs and 503 with its
// state otherwise; enclave_up is 1 while it runs and
// enclave_state{state="starting|running|stopping|stopped"} is 1 for the
// current state.
//
// The nitro-cli and control channel behind interfaces (nitrocli.CLI,
// Controller) let the whole life cycle run on a host without Nitro
// hardware, with fakes; the integration tests run it with a fake
// nitro-cli that starts nbd-enclave in a microVM.
package supervisor
