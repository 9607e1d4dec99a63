//go:build linux

// Command fake-nitro-cli answers like AWS's nitro-cli and, in the
// integration microVM, really starts an EIF's /init (nbd-enclave), so that
// what drives nitro-cli (nbd-parent run) is tested against its behaviour.
// Test-only; the harness installs it as nitro-cli on the VM's PATH.
//
// Usage:
//
//	nitro-cli run-enclave --eif-path P --cpu-count N --memory MiB [--enclave-cid C] [--debug-mode] [--enclave-name NAME]
//	nitro-cli run-enclave --config FILE
//	nitro-cli describe-enclaves
//	nitro-cli terminate-enclave (--enclave-id ID | --enclave-name NAME | --all)
//	nitro-cli console (--enclave-id ID | --enclave-name NAME)
//
// What it copies from nitro-cli (aws/aws-nitro-enclaves-cli):
//   - flags and --config JSON of run-enclave (src/common/commands_parser.rs,
//     RunEnclavesArgs): memory with an optional M/G/T suffix, cpu-count
//     or cpu-ids, the CID checks of parse_enclave_cid, the default name
//     from the EIF's file name with "_N" added to duplicates
//     (src/lib.rs new_enclave_name);
//   - the EIF is read and its CRC checked (package eif) before anything
//     starts (E35 on failure); memory below 4 times the EIF's size is
//     refused with E26 (src/enclave_proc/resource_manager.rs,
//     ENCLAVE_MEMORY_EIF_SIZE_RATIO);
//   - the boot heartbeat: a vsock listener on port 9000 bound before the
//     enclave starts, 0xB7 echoed, and run-enclave failing (E36) and
//     terminating the enclave when it does not come within one minute per
//     6 GiB of EIF plus one per 100 GiB of memory
//     (calculate_necessary_timeout, eif_loader's enclave_ready);
//   - the progress lines on stderr ("Start allocating memory...",
//     "Started enclave with enclave-cid: ..."), so stdout is the JSON only;
//   - the JSON it prints, pretty with two-space indents: EnclaveRunInfo,
//     EnclaveDescribeInfo (State "RUNNING", Flags "DEBUG_MODE" or "NONE",
//     Measurements), EnclaveTerminateInfo (src/common/json_output.rs,
//     src/enclave_proc/utils.rs flags_to_string); enclave IDs as
//     generate_enclave_id writes them without an instance's asset tag,
//     "i-0000000000000000-encN" (N the slot, hex);
//   - errors as "[ ENN ] text" and the help link on stderr, exit status the
//     error's number (src/common/mod.rs, document_errors.rs); console on an
//     enclave not started with --debug-mode is E44.
//
// Where it differs, being no hypervisor:
//   - the enclave is the EIF's ramdisks extracted (package cpio) into a
//     directory under the state directory, and its /init run as PID 1 of
//     new mount, PID and UTS namespaces, chrooted (pivot_root where the
//     VM's root allows it) into that tree; the EIF's kernel is not booted,
//     the VM's kernel serves. /proc/cmdline shows the EIF's cmdline (a
//     file bound over it) and /dev/console is a FIFO whose bytes, with the
//     init's stdout and stderr, go to the console log;
//   - every vsock peer in the VM is the loopback, CID 1: EnclaveCID is 1
//     whatever --enclave-cid says, and it is the CID the parent sees on
//     accept and must dial (the enclave's control port, for one);
//   - memory and CPUs are not reserved or limited; CPUIDs are 1..N;
//   - terminate-enclave SIGKILLs the namespace's PID 1, which ends every
//     process in it, as a destroyed VM would; a reboot(2) by the init ends
//     the namespace too, and the enclave leaves describe-enclaves;
//   - state lives in $NITRO_CLI_STATE (default /run/fake-nitro-cli), one
//     directory per enclave, kept by a detached "enclave process" (setsid)
//     like nitro-cli's, which removes it when the enclave ends.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
)

func main() {
	if len(os.Args) < 2 {
		usage(os.Stderr)
		os.Exit(1)
	}
	st := newState()
	var err error
	switch cmd, args := os.Args[1], os.Args[2:]; cmd {
	case "run-enclave":
		err = runEnclave(st, args, os.Stdout, os.Stderr)
	case "describe-enclaves":
		err = describeEnclaves(st, args, os.Stdout)
	case "terminate-enclave":
		err = terminateEnclave(st, args, os.Stdout)
	case "console":
		err = console(st, args, os.Stdout)
	case enclaveProcCmd:
		err = enclaveProc(st, args)
	case initCmd:
		err = enclaveInit(args)
	case "-h", "--help", "help":
		usage(os.Stdout)
		return
	default:
		usage(os.Stderr)
		os.Exit(1)
	}
	if err != nil {
		var ce *cliError
		if errors.As(err, &ce) {
			fmt.Fprintf(os.Stderr, "[ E%02d ] %s\n\nFor more details, please visit https://docs.aws.amazon.com/enclaves/latest/user/cli-errors.html#E%02d\n", ce.code, ce.msg, ce.code)
			os.Exit(ce.code)
		}
		fmt.Fprintf(os.Stderr, "[ E00 ] Unspecified error. %v\n", err)
		os.Exit(1)
	}
}

func usage(w io.Writer) {
	fmt.Fprint(w, `Usage: nitro-cli COMMAND [flags]   (fake-nitro-cli, a test double)

Commands:
  run-enclave --eif-path P --cpu-count N --memory MiB [--enclave-cid C] [--debug-mode] [--enclave-name NAME]
  run-enclave --config FILE
  describe-enclaves
  terminate-enclave (--enclave-id ID | --enclave-name NAME | --all)
  console (--enclave-id ID | --enclave-name NAME)

Runs an EIF's /init in namespaces of this machine instead of a Nitro
enclave; every enclave reports EnclaveCID 1 (vsock loopback). State in
$NITRO_CLI_STATE (default /run/fake-nitro-cli).
`)
}

// nitro-cli's error codes (src/common/mod.rs NitroCliErrorEnum, whose
// value is the exit status).
const (
	eMissingArgument     = 1
	eConflictingArgument = 2
	eInvalidArgument     = 3
	eFileOperation       = 19
	eInsufficientMemory  = 26
	eEifParsing          = 35
	eEnclaveBoot         = 36
	eEnclaveProcConn     = 39
	eConsoleConnection   = 44
)

// cliError is a nitro-cli error: its code and message.
type cliError struct {
	code int
	msg  string
}

func (e *cliError) Error() string { return fmt.Sprintf("[ E%02d ] %s", e.code, e.msg) }

func fail(code int, format string, args ...any) error {
	return &cliError{code: code, msg: fmt.Sprintf(format, args...)}
}

// printJSON prints v as serde_json::to_string_pretty does.
func printJSON(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(w, string(b))
	return err
}
