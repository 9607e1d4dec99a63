package integration

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"time"
)

// VM is a QEMU microVM run: serial console on stdio, no network, powered
// off by /init.
type VM struct {
	QEMU string // "" means qemu-system-x86_64 from PATH
	// Accel is QEMU's accelerator: "" means "tcg" (pure emulation, works
	// everywhere); "kvm" is far faster where /dev/kvm really works. It is
	// not picked automatically: where this was written, /dev/kvm opened but
	// a KVM guest got no further than the firmware in 20 seconds.
	Accel   string
	Kernel  string // vmlinuz
	Initrd  string // from Initramfs.WriteFile
	CPUs    int    // 0 means 2
	MemoryM int    // MiB; 0 means 1024
	// Drives are raw image files attached as virtio-blk disks, /dev/vda,
	// /dev/vdb, ... in order.
	Drives []string
	// ShareDir, when set, is exported read-write over 9p with mount tag
	// "out"; /init mounts it on /out and tests find it as itest.OutDir.
	ShareDir string
	// HostRoot, when set, is exported read-only over 9p with mount tag
	// "hostroot": /init mounts it on /host and binds its /usr on the
	// guest's /usr, so tests can run the host's dynamically linked tools
	// (nbdkit, fio, cryptsetup) as peers and oracles, found through
	// itest.HostTool. Nothing in the guest can write the host through it.
	HostRoot string
	// Append is added to the kernel command line.
	Append string
	// Cmdline, when set, is the whole kernel command line instead of the
	// harness's (console, token) plus Append: an EIF boots with its own.
	// Such a run prints no harness lines; Run then succeeds when QEMU
	// exits by itself (the guest rebooted or powered off under
	// -no-reboot), and the caller reads the console.
	Cmdline string
}

// ErrIncomplete reports a run whose /init never printed its final line:
// the VM crashed, hung or was killed.
var ErrIncomplete = errors.New("integration: VM run did not complete")

// Run boots the VM and waits until it powers off or ctx ends (which kills
// QEMU). The console is copied line by line to console when it is not nil.
// The error is non-nil when QEMU could not run, the run did not complete, or
// a tagged line was malformed; test failures are in the Report.
func (vm *VM) Run(ctx context.Context, console io.Writer) (Report, error) {
	token, err := newToken()
	if err != nil {
		return Report{}, err
	}
	qemu := vm.QEMU
	if qemu == "" {
		qemu = "qemu-system-x86_64"
	}
	accel := vm.Accel
	if accel == "" {
		accel = "tcg"
	}
	cpus, mem := vm.CPUs, vm.MemoryM
	if cpus == 0 {
		cpus = 2
	}
	if mem == 0 {
		mem = 1024
	}
	args := []string{
		"-accel", accel, "-cpu", "max", "-smp", strconv.Itoa(cpus), "-m", strconv.Itoa(mem),
		"-nographic", "-no-reboot", "-nic", "none",
		"-kernel", vm.Kernel, "-initrd", vm.Initrd,
		"-append", "console=ttyS0 quiet panic=-1 integration.token=" + token + " " + vm.Append,
	}
	if vm.Cmdline != "" {
		args[len(args)-1] = vm.Cmdline
	}
	for _, d := range vm.Drives {
		if _, err := os.Stat(d); err != nil {
			return Report{}, fmt.Errorf("integration: drive: %w", err)
		}
		args = append(args, "-drive", "file="+d+",if=virtio,format=raw")
	}
	if vm.ShareDir != "" {
		args = append(args, "-virtfs", "local,path="+vm.ShareDir+",mount_tag=out,security_model=none")
	}
	if vm.HostRoot != "" {
		args = append(args, "-virtfs", "local,path="+vm.HostRoot+",mount_tag=hostroot,security_model=none,readonly=on")
	}

	cmd := exec.CommandContext(ctx, qemu, args...)
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.StdoutPipe()
	if err != nil {
		return Report{}, fmt.Errorf("integration: %w", err)
	}
	cmd.Stderr = cmd.Stdout // QEMU's own complaints belong in the log too
	p := NewParser(token)
	if err := cmd.Start(); err != nil {
		return Report{}, fmt.Errorf("integration: start %s: %w", qemu, err)
	}
	perr := p.Consume(out, console)
	werr := cmd.Wait()
	rep := p.Report()
	switch {
	case ctx.Err() != nil:
		return rep, fmt.Errorf("%w: %w", ErrIncomplete, ctx.Err())
	case vm.Cmdline != "" && werr == nil:
		return rep, nil
	case !rep.Done && werr != nil:
		return rep, fmt.Errorf("%w: %s: %w", ErrIncomplete, qemu, werr)
	case !rep.Done:
		return rep, fmt.Errorf("%w: QEMU exited before INTEGRATION-DONE", ErrIncomplete)
	}
	return rep, perr
}

func newToken() (string, error) {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("integration: token: %w", err)
	}
	return hex.EncodeToString(b), nil
}
