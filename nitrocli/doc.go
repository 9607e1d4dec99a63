// Package nitrocli drives nitro-cli, the AWS Nitro Enclaves command line
// tool, from the parent instance: run-enclave, describe-enclaves,
// terminate-enclave and console, behind the small interface [CLI] so that
// the supervisor (package supervisor) is tested with a fake.
//
// [Exec] runs the nitro-cli executable rather than talking to
// /dev/nitro_enclaves itself: nitro-cli owns the device's ioctls, the
// hugepage memory and CPU pool set up by the allocator service, the
// per-enclave process that keeps the enclave's file descriptor (an enclave
// dies with it) and the boot heartbeat on vsock port 9000. Reimplementing
// those would be a second, unaudited enclave launcher.
//
// The JSON answers are parsed as nitro-cli prints them: the structs
// EnclaveRunInfo, EnclaveDescribeInfo and EnclaveTerminateInfo of
// src/common/json_output.rs in github.com/aws/aws-nitro-enclaves-cli
// (release 1.5.0), pretty-printed by serde_json on stdout; progress lines
// ("Start allocating memory...", "Started enclave with enclave-cid: ...")
// go to stderr. Errors are printed to stderr as "[ Exx ] description"
// (src/common/document_errors.rs, get_detailed_info) and the process exits
// non-zero; [CommandError] carries the command, the exit status and that
// line. Output is read up to [MaxOutput] bytes: a larger answer is an
// error, not an allocation.
//
// [PeerCID] is the CID an enclave started with --enclave-cid N has as the
// parent's vsock peer: N, or, built with the fakenitro tag for the
// integration VM's fake nitro-cli, the loopback CID 1.
//
// [MinMemoryMiB] is nitro-cli's own floor for --memory: four times the EIF
// file's size (ENCLAVE_MEMORY_EIF_SIZE_RATIO in
// src/enclave_proc/resource_manager.rs), rounded up to whole MiB.
package nitrocli
