package nitrocli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"slices"
	"strconv"
	"strings"
)

// MaxOutput bounds what is read of one command's stdout and of its
// stderr. nitro-cli's answers are a few hundred bytes per enclave.
const MaxOutput = 1 << 20

// Enclave states as describe-enclaves prints them (EnclaveState's Display
// in src/enclave_proc/resource_manager.rs).
const (
	StateRunning     = "RUNNING"
	StateTerminating = "TERMINATING"
	StateEmpty       = "EMPTY"
)

// FlagsDebugMode is describe-enclaves' Flags of an enclave started with
// --debug-mode ("NONE" otherwise).
const FlagsDebugMode = "DEBUG_MODE"

// RunInfo is run-enclave's answer (EnclaveRunInfo).
type RunInfo struct {
	EnclaveName  string   `json:"EnclaveName,omitempty"`
	EnclaveID    string   `json:"EnclaveID"`
	ProcessID    uint32   `json:"ProcessID"`
	EnclaveCID   uint64   `json:"EnclaveCID"`
	NumberOfCPUs uint64   `json:"NumberOfCPUs"`
	CPUIDs       []uint32 `json:"CPUIDs"`
	MemoryMiB    uint64   `json:"MemoryMiB"`
}

// EnclaveInfo is one element of describe-enclaves' answer
// (EnclaveDescribeInfo; its optional PCRs, image name and metadata are
// not read).
type EnclaveInfo struct {
	RunInfo        // the fields run-enclave answers with, named alike
	State   string `json:"State"`
	Flags   string `json:"Flags"`
}

// TerminateInfo is terminate-enclave's answer (EnclaveTerminateInfo).
type TerminateInfo struct {
	EnclaveName string `json:"EnclaveName,omitempty"`
	EnclaveID   string `json:"EnclaveID"`
	Terminated  bool   `json:"Terminated"`
}

// RunOptions are run-enclave's arguments.
type RunOptions struct {
	EIFPath   string // --eif-path
	CPUCount  int    // --cpu-count
	MemoryMiB uint64 // --memory
	// CID is --enclave-cid; 0 lets nitro-cli choose one.
	CID   uint32
	Debug bool // --debug-mode: console readable, PCRs all zero
}

// Args returns the run-enclave command line for o.
func (o RunOptions) Args() []string {
	a := []string{"run-enclave", "--eif-path", o.EIFPath,
		"--cpu-count", strconv.Itoa(o.CPUCount),
		"--memory", strconv.FormatUint(o.MemoryMiB, 10)}
	if o.CID != 0 {
		a = append(a, "--enclave-cid", strconv.FormatUint(uint64(o.CID), 10))
	}
	if o.Debug {
		a = append(a, "--debug-mode")
	}
	return a
}

// CLI is what the parent needs of nitro-cli.
type CLI interface {
	// RunEnclave starts an enclave and returns once nitro-cli has seen
	// its boot heartbeat.
	RunEnclave(ctx context.Context, o RunOptions) (RunInfo, error)
	// DescribeEnclaves lists the enclaves running on this parent.
	DescribeEnclaves(ctx context.Context) ([]EnclaveInfo, error)
	// TerminateEnclave stops one enclave and frees its memory and CPUs.
	TerminateEnclave(ctx context.Context, id string) (TerminateInfo, error)
	// Console copies a debug-mode enclave's console to w until it ends
	// or ctx is done.
	Console(ctx context.Context, id string, w io.Writer) error
}

// MinMemoryMiB is the least --memory nitro-cli accepts for an EIF of
// eifSize bytes: four times its size in whole MiB.
func MinMemoryMiB(eifSize int64) uint64 {
	const mib = 1 << 20
	return uint64((eifSize+mib-1)/mib) * 4
}

// ErrOutput reports an answer nitro-cli printed that is not what its
// source says it prints (or larger than MaxOutput).
var ErrOutput = errors.New("nitrocli: unexpected output")

// ParseRunInfo parses run-enclave's stdout.
func ParseRunInfo(b []byte) (RunInfo, error) {
	return parse(b, "run-enclave", func(ri RunInfo) bool { return ri.EnclaveID != "" })
}

// ParseDescribe parses describe-enclaves' stdout, a JSON array.
func ParseDescribe(b []byte) ([]EnclaveInfo, error) {
	return parse(b, "describe-enclaves", func(es []EnclaveInfo) bool {
		return es != nil && !slices.ContainsFunc(es, func(e EnclaveInfo) bool { return e.EnclaveID == "" })
	})
}

// ParseTerminate parses terminate-enclave's stdout.
func ParseTerminate(b []byte) (TerminateInfo, error) {
	return parse(b, "terminate-enclave", func(ti TerminateInfo) bool { return ti.EnclaveID != "" })
}

// parse decodes command's answer and checks it with ok: every enclave
// named, an array where nitro-cli prints one.
func parse[T any](b []byte, command string, ok func(T) bool) (T, error) {
	var v, zero T
	if err := decode(b, &v); err != nil {
		return zero, err
	}
	if !ok(v) {
		return zero, fmt.Errorf("%w: %s: no EnclaveID, or not the JSON nitro-cli prints", ErrOutput, command)
	}
	return v, nil
}

// decode reads exactly one JSON value from b, which is bounded by the
// caller. Unknown fields are allowed: nitro-cli adds some across
// versions (ProcessID, EnclaveName, Measurements, Metadata).
func decode(b []byte, v any) error {
	if len(b) > MaxOutput {
		return fmt.Errorf("%w: %d bytes, more than %d", ErrOutput, len(b), MaxOutput)
	}
	d := json.NewDecoder(bytes.NewReader(b))
	if err := d.Decode(v); err != nil {
		return fmt.Errorf("%w: %w", ErrOutput, err)
	}
	if _, err := d.Token(); err != io.EOF {
		return fmt.Errorf("%w: trailing data after the JSON answer", ErrOutput)
	}
	return nil
}

// CommandError is a nitro-cli command that failed.
type CommandError struct {
	Command    string // e.g. "run-enclave"
	ExitStatus int    // -1 when it did not exit normally (signal, not started)
	// Code is nitro-cli's error code ("E26"), from its "[ E26 ] ..." line
	// on stderr; empty when it printed none.
	Code string
	// Message is that line, else the last non-empty line of stderr.
	Message string
	Err     error // what os/exec reported
}

func (e *CommandError) Error() string {
	s := "nitro-cli " + e.Command
	if e.ExitStatus >= 0 {
		s += ": exit status " + strconv.Itoa(e.ExitStatus)
	} else if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

func (e *CommandError) Unwrap() error { return e.Err }

// ErrorLine finds nitro-cli's error line ("[ E26 ] Insufficient memory
// requested. ...") in its stderr and returns its code and the line; with
// no such line, the last non-empty line and no code.
func ErrorLine(stderr []byte) (code, line string) {
	var last string
	for l := range strings.Lines(string(stderr)) {
		l = strings.TrimSpace(l)
		if l == "" {
			continue
		}
		last = l
		// The error may follow an additional message: "info | [ E26 ] ...".
		i := strings.Index(l, "[ E")
		if i < 0 {
			continue
		}
		rest := l[i+2:]
		end := strings.Index(rest, " ]")
		if end < 2 || end > 4 || strings.Trim(rest[1:end], "0123456789") != "" {
			continue
		}
		return rest[:end], l
	}
	return "", last
}

// Exec runs the nitro-cli executable.
type Exec struct {
	// Path is the executable; empty means "nitro-cli" on PATH.
	Path string
	// Stderr, if not nil, receives what nitro-cli prints on stderr
	// (its progress lines) as well.
	Stderr io.Writer
}

func (x *Exec) path() string {
	if x.Path == "" {
		return "nitro-cli"
	}
	return x.Path
}

// limitedBuffer keeps the first max bytes written and notes the rest.
type limitedBuffer struct {
	bytes.Buffer
	max      int
	overflow bool
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if room := b.max - b.Len(); len(p) > room {
		b.overflow = true
		b.Buffer.Write(p[:max(room, 0)])
		return len(p), nil
	}
	return b.Buffer.Write(p)
}

// run executes nitro-cli with args and returns its stdout.
func (x *Exec) run(ctx context.Context, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, x.path(), args...)
	stdout := &limitedBuffer{max: MaxOutput}
	stderr := &limitedBuffer{max: MaxOutput}
	cmd.Stdout = stdout
	cmd.Stderr = stderr
	if x.Stderr != nil {
		cmd.Stderr = io.MultiWriter(stderr, x.Stderr)
	}
	if err := cmd.Run(); err != nil {
		ce := commandError(args[0], err, stderr.Bytes())
		if ctx.Err() != nil {
			ce.Err = fmt.Errorf("%w (%w)", ctx.Err(), err)
			ce.ExitStatus = -1
		}
		return nil, ce
	}
	if stdout.overflow {
		return nil, fmt.Errorf("nitro-cli %s: %w: more than %d bytes", args[0], ErrOutput, MaxOutput)
	}
	return stdout.Bytes(), nil
}

// RunEnclave runs "nitro-cli run-enclave".
func (x *Exec) RunEnclave(ctx context.Context, o RunOptions) (RunInfo, error) {
	return answer(ctx, x, ParseRunInfo, o.Args()...)
}

// DescribeEnclaves runs "nitro-cli describe-enclaves".
func (x *Exec) DescribeEnclaves(ctx context.Context) ([]EnclaveInfo, error) {
	return answer(ctx, x, ParseDescribe, "describe-enclaves")
}

// TerminateEnclave runs "nitro-cli terminate-enclave --enclave-id ID".
func (x *Exec) TerminateEnclave(ctx context.Context, id string) (TerminateInfo, error) {
	return answer(ctx, x, ParseTerminate, "terminate-enclave", "--enclave-id", id)
}

// answer runs nitro-cli with args and parses its stdout with parse.
func answer[T any](ctx context.Context, x *Exec, parse func([]byte) (T, error), args ...string) (T, error) {
	var zero T
	out, err := x.run(ctx, args...)
	if err != nil {
		return zero, err
	}
	v, err := parse(out)
	if err != nil {
		return zero, fmt.Errorf("nitro-cli %s: %w", args[0], err)
	}
	return v, nil
}

// Console runs "nitro-cli console --enclave-id ID" with its stdout on w,
// until the console ends (the enclave stopped) or ctx is done, which
// ends it and returns nil.
func (x *Exec) Console(ctx context.Context, id string, w io.Writer) error {
	cmd := exec.CommandContext(ctx, x.path(), "console", "--enclave-id", id)
	cmd.Stdout = w
	stderr := &limitedBuffer{max: MaxOutput}
	cmd.Stderr = stderr
	err := cmd.Run()
	if err == nil || ctx.Err() != nil {
		return nil
	}
	return commandError("console", err, stderr.Bytes())
}

// commandError describes the failed run of command.
func commandError(command string, err error, stderr []byte) *CommandError {
	ce := &CommandError{Command: command, ExitStatus: -1, Err: err}
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.Exited() {
		ce.ExitStatus = ee.ExitCode()
	}
	ce.Code, ce.Message = ErrorLine(stderr)
	return ce
}
