//go:build linux

package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/mdlayher/vsock"
	"golang.org/x/sys/unix"

	"github.com/enclave-storage/enclave-storage/cpio"
	"github.com/enclave-storage/enclave-storage/eif"
	"github.com/enclave-storage/enclave-storage/heartbeat"
)

// runArgs are run-enclave's arguments, with the --config JSON names of
// nitro-cli's RunEnclavesArgs.
type runArgs struct {
	EIFPath       string   `json:"eif_path"`
	EnclaveCID    *uint64  `json:"enclave_cid"`
	MemoryMiB     uint64   `json:"memory_mib"`
	CPUIDs        []uint32 `json:"cpu_ids"`
	DebugMode     bool     `json:"debug_mode"`
	AttachConsole bool     `json:"attach_console"`
	CPUCount      *uint32  `json:"cpu_count"`
	EnclaveName   *string  `json:"enclave_name"`
}

// runInfo is nitro-cli's EnclaveRunInfo.
type runInfo struct {
	EnclaveName  string   `json:"EnclaveName"`
	EnclaveID    string   `json:"EnclaveID"`
	ProcessID    int      `json:"ProcessID"`
	EnclaveCID   uint64   `json:"EnclaveCID"`
	NumberOfCPUs int      `json:"NumberOfCPUs"`
	CPUIDs       []uint32 `json:"CPUIDs"`
	MemoryMiB    uint64   `json:"MemoryMiB"`
}

// runInfo is what run-enclave prints of e.
func (e *enclave) runInfo() runInfo {
	return runInfo{EnclaveName: e.Name, EnclaveID: e.ID, ProcessID: e.ProcPID,
		EnclaveCID: LoopbackCID, NumberOfCPUs: e.CPUs, CPUIDs: e.CPUIDs, MemoryMiB: e.Memory}
}

// LoopbackCID is the CID every enclave reports: in the VM all vsock
// peers are the loopback.
const LoopbackCID = 1

// memoryEIFRatio is nitro-cli's ENCLAVE_MEMORY_EIF_SIZE_RATIO.
const memoryEIFRatio = 4

func parseRunArgs(args []string) (runArgs, error) {
	fs := flag.NewFlagSet("run-enclave", flag.ContinueOnError)
	var (
		a       runArgs
		config  = fs.String("config", "", "JSON file with the arguments (nitro-cli's RunEnclavesArgs)")
		cpus    = fs.Uint("cpu-count", 0, "number of CPUs")
		memory  = fs.String("memory", "", "memory in MiB, or with a M, G or T suffix")
		cid     = fs.String("enclave-cid", "", "requested CID (reported as 1: vsock loopback)")
		name    = fs.String("enclave-name", "", "enclave name (default: the EIF's file name)")
		cpuIDs  = fs.String("cpu-ids", "", "comma-separated CPU IDs, instead of --cpu-count")
		eifPath = fs.String("eif-path", "", "the enclave image")
	)
	fs.BoolVar(&a.DebugMode, "debug-mode", false, "debug mode: the console is readable")
	fs.BoolVar(&a.AttachConsole, "attach-console", false, "attach to the console after the start (implies --debug-mode)")
	if err := fs.Parse(args); err != nil {
		return a, fail(eInvalidArgument, "Invalid argument provided. %v", err)
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if *config != "" {
		b, err := os.ReadFile(*config)
		if err != nil {
			return a, fail(eFileOperation, "File operation failure. Failed to open config file: %v", err)
		}
		var j runArgs
		if err := json.Unmarshal(b, &j); err != nil {
			return a, fail(40, "Serde error. Invalid JSON format for config file: %v", err)
		}
		if j.CPUCount == nil && j.CPUIDs == nil {
			return a, fail(eMissingArgument, "Missing mandatory argument. User did not provide the `cpu-count` argument.")
		}
		if j.CPUCount != nil && j.CPUIDs != nil {
			return a, fail(eConflictingArgument, "Conflicting arguments. User provided both `cpu-count` and `cpu-ids`.")
		}
		j.DebugMode = j.DebugMode || j.AttachConsole
		return j, nil
	}
	for _, f := range []string{"eif-path", "memory"} {
		if !set[f] {
			return a, fail(eMissingArgument, "Missing mandatory argument. User did not provide the `%s` argument.", f)
		}
	}
	if set["cpu-count"] == set["cpu-ids"] {
		if set["cpu-count"] {
			return a, fail(eConflictingArgument, "Conflicting arguments. User provided both `cpu-count` and `cpu-ids`.")
		}
		return a, fail(eMissingArgument, "Missing mandatory argument. User did not provide the `cpu-count` argument.")
	}
	a.EIFPath = *eifPath
	m, err := parseMemory(*memory)
	if err != nil {
		return a, err
	}
	a.MemoryMiB = m
	if set["cpu-count"] {
		n := uint32(*cpus)
		a.CPUCount = &n
	} else {
		for _, s := range strings.Split(*cpuIDs, ",") {
			v, err := strconv.ParseUint(strings.TrimSpace(s), 10, 32)
			if err != nil {
				return a, fail(eInvalidArgument, "Invalid argument provided. The `cpu-ids` argument %q is not a list of numbers.", *cpuIDs)
			}
			a.CPUIDs = append(a.CPUIDs, uint32(v))
		}
	}
	if set["enclave-cid"] {
		c, err := parseCID(*cid)
		if err != nil {
			return a, err
		}
		a.EnclaveCID = &c
	}
	if set["enclave-name"] {
		a.EnclaveName = name
	}
	a.DebugMode = a.DebugMode || a.AttachConsole
	return a, nil
}

// parseMemory is nitro-cli's parse_memory: a number, optionally followed
// by M, G or T (MiB when absent).
func parseMemory(s string) (uint64, error) {
	i := strings.IndexFunc(s, func(r rune) bool { return r < '0' || r > '9' })
	num, unit := s, ""
	if i >= 0 {
		num, unit = s[:i], s[i:]
	}
	n, err := strconv.ParseUint(num, 10, 64)
	if err != nil {
		return 0, fail(eInvalidArgument, "Invalid argument provided. `memory` argument does not contain a number (%q).", s)
	}
	switch unit {
	case "", "M":
		return n, nil
	case "G":
		return n << 10, nil
	case "T":
		return n << 20, nil
	}
	return 0, fail(eInvalidArgument, "Invalid argument provided. `memory` argument does not contain a valid size indicator (%q).", s)
}

// parseCID is nitro-cli's parse_enclave_cid: not 0, not a well-known CID
// (1, 2, u32 max), not the parent's (3), within u32.
func parseCID(s string) (uint64, error) {
	c, err := strconv.ParseUint(s, 10, 64)
	bad := func(why string) (uint64, error) {
		return 0, fail(eInvalidArgument, "Invalid argument provided. CID %s %s", s, why)
	}
	switch {
	case err != nil:
		return bad("is not a number")
	case c == 0:
		return bad("is reserved")
	case c <= 2 || c == 1<<32-1:
		return bad("is a well-known CID, not to be used for enclaves")
	case c == 3:
		return bad("is the CID of the parent VM, not to be used for enclaves")
	case c > 1<<32-1:
		return bad("is higher than the maximum supported (u32 max) for a vsock device")
	}
	return c, nil
}

// enclaveName is nitro-cli's new_enclave_name.
func enclaveName(a runArgs, taken []string) string {
	base := path.Base(a.EIFPath)
	base = strings.TrimSuffix(base, ".eif")
	if a.EnclaveName != nil {
		base = *a.EnclaveName
	}
	name := base
	for i := 1; contains(taken, name); i++ {
		name = fmt.Sprintf("%s_%d", base, i)
	}
	return name
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

// bootTimeout is calculate_necessary_timeout: a minute per started 6 GiB
// of EIF and per started 100 GiB of memory.
func bootTimeout(eifSize int64, memMiB uint64) time.Duration {
	const gib = 1 << 30
	a := 1 + (eifSize-1)/(6*gib)
	b := 1 + (int64(memMiB)<<20-1)/(100*gib)
	return time.Duration(a+b) * time.Minute
}

func runEnclave(st state, args []string, stdout, stderr io.Writer) error {
	a, err := parseRunArgs(args)
	if err != nil {
		return err
	}
	f, err := os.Open(a.EIFPath)
	if err != nil {
		return fail(eFileOperation, "File operation failure. Failed to open the EIF: %v", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fail(eFileOperation, "File operation failure. %v", err)
	}
	if memoryEIFRatio*fi.Size() > int64(a.MemoryMiB)<<20 {
		minMiB := (fi.Size() + 1<<20 - 1) >> 20 * memoryEIFRatio
		return fail(eInsufficientMemory, "Insufficient memory requested. User provided `memory` is %d MB, but based on the EIF file size, the minimum memory should be %d MB", a.MemoryMiB, minMiB)
	}
	image, err := eif.ReadContext(context.Background(), f, fi.Size())
	if err != nil {
		return fail(eEifParsing, "EIF file parsing error. %v", err)
	}
	running, err := st.list()
	if err != nil {
		return err
	}
	var names []string
	for _, e := range running {
		names = append(names, e.Name)
	}
	e := &enclave{Name: enclaveName(a, names), Memory: a.MemoryMiB, Debug: a.DebugMode, PCRs: image.PCRs, CPUIDs: a.CPUIDs}
	if a.CPUCount != nil {
		for i := uint32(1); i <= *a.CPUCount; i++ {
			e.CPUIDs = append(e.CPUIDs, i)
		}
	}
	e.CPUs = len(e.CPUIDs)
	if err := st.create(e); err != nil {
		return err
	}
	started := false
	defer func() {
		if !started {
			os.RemoveAll(e.dir)
		}
	}()
	if err := extract(image, e.path(rootDir)); err != nil {
		return fail(eFileOperation, "File operation failure. Extracting the EIF's ramdisks: %v", err)
	}
	if err := os.WriteFile(e.path(cmdlineFile), []byte(image.Cmdline+"\n"), 0o444); err != nil {
		return fail(eFileOperation, "File operation failure. %v", err)
	}

	// nitro-cli's progress lines go to stderr; stdout is the JSON only.
	fmt.Fprintln(stderr, "Start allocating memory...")

	// As nitro-cli: the heartbeat listener exists before the enclave starts.
	l, err := vsock.Listen(heartbeat.DefaultPort, nil)
	if err != nil {
		return fail(eEnclaveBoot, "Enclave boot failure. Enclave boot heartbeat vsock connection - vsock bind error: %v", err)
	}
	defer l.Close()

	self, err := os.Executable()
	if err != nil {
		return err
	}
	procLog, err := os.Create(e.path("process.log"))
	if err != nil {
		return fail(eFileOperation, "File operation failure. %v", err)
	}
	defer procLog.Close()
	cmd := exec.Command(self, enclaveProcCmd, e.dir)
	cmd.Stdout, cmd.Stderr = procLog, procLog
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fail(eEnclaveBoot, "Enclave boot failure. Starting the enclave process: %v", err)
	}
	started = true
	e.ProcPID = cmd.Process.Pid
	if err := e.save(); err != nil {
		return err
	}
	ids := make([]string, len(e.CPUIDs))
	for i, id := range e.CPUIDs {
		ids[i] = strconv.FormatUint(uint64(id), 10)
	}
	fmt.Fprintf(stderr, "Started enclave with enclave-cid: %d, memory: %d MiB, cpu-ids: [%s]\n", LoopbackCID, e.Memory, strings.Join(ids, ", "))
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	timeout := bootTimeout(fi.Size(), a.MemoryMiB)
	if err := awaitHeartbeat(l, exited, timeout); err != nil {
		kill(e)
		return fail(eEnclaveBoot, "Enclave boot failure. Waiting on enclave to boot failed with error %v", err)
	}
	if err := printJSON(stdout, e.runInfo()); err != nil {
		return err
	}
	if a.AttachConsole {
		return streamConsole(e, stdout)
	}
	return nil
}

// awaitHeartbeat accepts the enclave's heartbeat and echoes it; it fails
// when the enclave process ends first or timeout passes.
func awaitHeartbeat(l net.Listener, exited <-chan error, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	type result struct{ err error }
	got := make(chan result, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			got <- result{err}
			return
		}
		// The first connection must carry the heartbeat; a wrong byte fails.
		got <- result{heartbeat.Echo(ctx, c)}
	}()
	select {
	case r := <-got:
		return r.err
	case err := <-exited:
		return fmt.Errorf("the enclave ended before its heartbeat (%v)", err)
	case <-ctx.Done():
		return fmt.Errorf("no heartbeat within %v", timeout)
	}
}

// extract unpacks the EIF's ramdisks, in order, into dir, as the kernel
// unpacks an initramfs (later entries replace earlier ones).
func extract(image *eif.File, dir string) error {
	var rs []io.Reader
	for i, s := range image.Sections {
		if s.Type == eif.SectionRamdisk {
			rs = append(rs, image.Open(i))
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	r := cpio.NewReader(io.MultiReader(rs...))
	for {
		h, err := r.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		name := path.Clean("/" + h.Name)
		if name == "/" {
			continue
		}
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		perm := uint32(h.Mode.Perm())
		if h.Mode&fs.ModeSetuid != 0 {
			perm |= unix.S_ISUID
		}
		if h.Mode&fs.ModeSetgid != 0 {
			perm |= unix.S_ISGID
		}
		if h.Mode&fs.ModeSticky != 0 {
			perm |= unix.S_ISVTX
		}
		if h.Mode.Type() != fs.ModeDir {
			os.Remove(p)
		}
		switch t := h.Mode.Type(); {
		case t == fs.ModeDir:
			if err := os.Mkdir(p, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
				return err
			}
		case t == 0:
			out, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
			if err != nil {
				return err
			}
			_, err = io.Copy(out, r)
			if cerr := out.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
		case t == fs.ModeSymlink:
			if err := os.Symlink(h.Linkname, p); err != nil {
				return err
			}
			if err := os.Lchown(p, int(h.UID), int(h.GID)); err != nil {
				return err
			}
			continue
		case t == fs.ModeDevice|fs.ModeCharDevice, t == fs.ModeDevice:
			typ := uint32(unix.S_IFBLK)
			if t&fs.ModeCharDevice != 0 {
				typ = unix.S_IFCHR
			}
			if err := unix.Mknod(p, typ|perm, int(unix.Mkdev(h.RdevMajor, h.RdevMinor))); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
		case t == fs.ModeNamedPipe:
			if err := unix.Mkfifo(p, perm); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
		default:
			return fmt.Errorf("%s: unsupported entry type %v", name, t)
		}
		if err := os.Lchown(p, int(h.UID), int(h.GID)); err != nil {
			return err
		}
		if err := unix.Chmod(p, perm); err != nil {
			return err
		}
	}
}
