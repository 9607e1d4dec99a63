//go:build linux

package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/enclave-storage/enclave-storage/eif"
)

// Hidden subcommands: the detached enclave process, and the enclave's
// PID 1 before it becomes the EIF's /init.
const (
	enclaveProcCmd = "__enclave-process"
	initCmd        = "__enclave-init"
)

// enclaveProc keeps one enclave: it starts its init in new namespaces,
// copies its console to the log, and removes the enclave's record when
// the init ends (exit, reboot(2) or terminate-enclave's SIGKILL).
func enclaveProc(st state, args []string) error {
	if len(args) != 1 {
		return errors.New("usage: " + enclaveProcCmd + " DIR")
	}
	e, err := st.load(filepath.Base(args[0]))
	if err != nil {
		return err
	}
	logf, err := os.OpenFile(e.path(consoleLog), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	if err := unix.Mkfifo(e.path(consoleFIFO), 0o600); err != nil {
		return err
	}
	// Read-write: the FIFO never reports EOF while the enclave closes and
	// reopens /dev/console.
	fifo, err := os.OpenFile(e.path(consoleFIFO), os.O_RDWR, 0)
	if err != nil {
		return err
	}
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		io.Copy(logf, fifo)
	}()
	self, err := os.Executable()
	if err != nil {
		return err
	}
	cmd := exec.Command(self, initCmd, e.dir)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: unix.CLONE_NEWNS | unix.CLONE_NEWPID | unix.CLONE_NEWUTS}
	if err := cmd.Start(); err != nil {
		return err
	}
	if err := os.WriteFile(e.path(initPIDFile), []byte(strconv.Itoa(cmd.Process.Pid)), 0o600); err != nil {
		cmd.Process.Kill()
	}
	err = cmd.Wait()
	// Gone from describe-enclaves first, then the console's last bytes.
	os.Remove(e.path(infoFile))
	fifo.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	<-copied
	fifo.Close()
	fmt.Fprintf(os.Stderr, "enclave %s ended: %v\n", e.ID, err)
	return os.RemoveAll(e.dir)
}

// enclaveInit runs as PID 1 of the enclave's namespaces: it makes the
// extracted ramdisks the root, with /proc/cmdline showing the EIF's
// cmdline and /dev/console the console FIFO, and execs /init as the
// kernel would.
func enclaveInit(args []string) error {
	if len(args) != 1 || os.Getpid() != 1 {
		return errors.New("usage: " + initCmd + " DIR, as PID 1 of a new PID namespace")
	}
	dir := args[0]
	root := filepath.Join(dir, rootDir)
	steps := []struct {
		what string
		do   func() error
	}{
		{"private mounts", func() error { return unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, "") }},
		{"bind root", func() error { return unix.Mount(root, root, "", unix.MS_BIND|unix.MS_REC, "") }},
		{"mkdir proc, dev", func() error {
			if err := os.MkdirAll(filepath.Join(root, "proc"), 0o555); err != nil {
				return err
			}
			return os.MkdirAll(filepath.Join(root, "dev"), 0o755)
		}},
		// The init finds /proc and /dev mounted and keeps them
		// (enclave.InitSystem skips mount points).
		{"mount proc", func() error {
			return unix.Mount("proc", filepath.Join(root, "proc"), "proc", unix.MS_NODEV|unix.MS_NOSUID|unix.MS_NOEXEC, "")
		}},
		{"cmdline", func() error {
			return unix.Mount(filepath.Join(dir, cmdlineFile), filepath.Join(root, "proc/cmdline"), "", unix.MS_BIND, "")
		}},
		{"mount dev", func() error {
			return unix.Mount("dev", filepath.Join(root, "dev"), "devtmpfs", unix.MS_NOSUID|unix.MS_NOEXEC, "")
		}},
		{"console", func() error {
			return unix.Mount(filepath.Join(dir, consoleFIFO), filepath.Join(root, "dev/console"), "", unix.MS_BIND, "")
		}},
		{"hostname", func() error { return unix.Sethostname([]byte("enclave")) }},
		{"root", func() error { return enterRoot(root) }},
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			return fmt.Errorf("enclave init: %s: %w", s.what, err)
		}
	}
	// The kernel's environment for init.
	return unix.Exec("/init", []string{"/init"}, []string{"HOME=/", "TERM=linux"})
}

// enterRoot makes root the root directory: pivot_root where the current
// root allows it (not on the initramfs's rootfs), else chroot.
func enterRoot(root string) error {
	if err := os.Chdir(root); err != nil {
		return err
	}
	old := ".oldroot"
	if err := os.MkdirAll(old, 0o700); err != nil {
		return err
	}
	if err := unix.PivotRoot(".", old); err == nil {
		if err := os.Chdir("/"); err != nil {
			return err
		}
		if err := unix.Unmount("/"+old, unix.MNT_DETACH); err != nil {
			return err
		}
		return os.Remove("/" + old)
	}
	os.Remove(old)
	if err := unix.Chroot("."); err != nil {
		return err
	}
	return os.Chdir("/")
}

// kill ends the enclave as a destroyed VM ends: SIGKILL to its PID 1
// (and so to its whole PID namespace), or to the enclave process when the
// init has not started; it waits until the enclave process is gone.
func kill(e *enclave) {
	if pid := e.initPID(); pid > 0 {
		unix.Kill(pid, unix.SIGKILL)
	} else if e.ProcPID > 0 {
		unix.Kill(e.ProcPID, unix.SIGKILL)
	}
	for i := 0; i < 600 && e.alive(); i++ {
		time.Sleep(50 * time.Millisecond)
	}
}

// terminateInfo is nitro-cli's EnclaveTerminateInfo.
type terminateInfo struct {
	EnclaveName string `json:"EnclaveName,omitempty"`
	EnclaveID   string `json:"EnclaveID"`
	Terminated  bool   `json:"Terminated"`
}

func terminateEnclave(st state, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("terminate-enclave", flag.ContinueOnError)
	id := fs.String("enclave-id", "", "the enclave's ID")
	name := fs.String("enclave-name", "", "the enclave's name")
	all := fs.Bool("all", false, "terminate every enclave")
	if err := fs.Parse(args); err != nil {
		return fail(eInvalidArgument, "Invalid argument provided. %v", err)
	}
	var targets []*enclave
	switch {
	case *all:
		l, err := st.list()
		if err != nil {
			return err
		}
		targets = l
	case *id != "" || *name != "":
		e, err := st.find(*id, *name)
		if err != nil {
			return err
		}
		targets = []*enclave{e}
	default:
		return fail(eMissingArgument, "Missing mandatory argument. User did not provide the `enclave-id` argument.")
	}
	for _, e := range targets {
		kill(e)
		if err := printJSON(stdout, terminateInfo{EnclaveName: e.Name, EnclaveID: e.ID, Terminated: !e.alive()}); err != nil {
			return err
		}
	}
	return nil
}

// describeInfo is nitro-cli's EnclaveDescribeInfo (without --metadata).
// Its first fields are EnclaveRunInfo's.
type describeInfo struct {
	runInfo
	State        string   `json:"State"`
	Flags        string   `json:"Flags"`
	Measurements eif.PCRs `json:"Measurements"`
}

func describeEnclaves(st state, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("describe-enclaves", flag.ContinueOnError)
	fs.Bool("metadata", false, "accepted; the fake prints no metadata")
	if err := fs.Parse(args); err != nil {
		return fail(eInvalidArgument, "Invalid argument provided. %v", err)
	}
	l, err := st.list()
	if err != nil {
		return err
	}
	out := []describeInfo{}
	for _, e := range l {
		flags := "NONE"
		if e.Debug {
			flags = "DEBUG_MODE"
		}
		out = append(out, describeInfo{runInfo: e.runInfo(), State: "RUNNING", Flags: flags, Measurements: e.PCRs})
	}
	return printJSON(stdout, out)
}

func console(st state, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("console", flag.ContinueOnError)
	id := fs.String("enclave-id", "", "the enclave's ID")
	name := fs.String("enclave-name", "", "the enclave's name")
	fs.Uint64("disconnect-timeout", 0, "accepted; the fake streams until the enclave ends")
	if err := fs.Parse(args); err != nil {
		return fail(eInvalidArgument, "Invalid argument provided. %v", err)
	}
	if *id == "" && *name == "" {
		return fail(eMissingArgument, "Missing mandatory argument. User did not provide the `enclave-id` argument.")
	}
	e, err := st.find(*id, *name)
	if err != nil {
		return err
	}
	if !e.Debug {
		return fail(eConsoleConnection, "Enclave console connection failure. The enclave was not started with the debug flag set, include '--debug-mode' in the run-enclave command")
	}
	return streamConsole(e, stdout)
}

// streamConsole copies the enclave's console log, from its start, until
// the enclave has ended.
func streamConsole(e *enclave, stdout io.Writer) error {
	f, err := os.Open(e.path(consoleLog))
	if err != nil {
		return fail(eConsoleConnection, "Enclave console connection failure. %v", err)
	}
	defer f.Close()
	fmt.Fprintf(stdout, "Connecting to the console for enclave %d...\n", LoopbackCID)
	fmt.Fprintln(stdout, "Successfully connected to the console.")
	for {
		n, err := io.Copy(stdout, f)
		if err != nil {
			return fail(45, "Enclave console read error. %v", err)
		}
		if n == 0 && !e.alive() {
			// One more read: what the enclave process wrote last.
			_, err := io.Copy(stdout, f)
			return err
		}
		if n == 0 {
			time.Sleep(100 * time.Millisecond)
		}
	}
}
