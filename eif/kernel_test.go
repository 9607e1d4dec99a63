package eif

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// kernelInit is the stand-in for nbd-enclave that TestKernelBootsAppRamdisk
// boots as PID 1: it proves the kernel unpacked the archive and followed
// the /init symlink, prints what the real nbd-enclave would read, and
// powers off.
const kernelInit = `package main

import (
	"fmt"
	"os"
	"syscall"
)

func main() {
	v, err := os.ReadFile("/etc/enclave-storage/verity.json")
	if merr := syscall.Mount("proc", "/proc", "proc", 0, ""); merr != nil {
		fmt.Println("mount /proc:", merr)
	}
	c, _ := os.ReadFile("/proc/cmdline")
	l, _ := os.Readlink("/init")
	fmt.Printf("EIF-TEST pid=%d init=%s verity=%s err=%v cmdline=%s", os.Getpid(), l, v, err, c)
	syscall.Sync()
	syscall.Reboot(syscall.LINUX_REBOOT_CMD_POWER_OFF)
}
`

// TestKernelBootsAppRamdisk boots a real Linux kernel under QEMU (TCG)
// with an AppRamdisk as its initramfs: the kernel's own cpio unpacker is
// the oracle for the archive format. It needs $ENCLAVE_STORAGE_TEST_KERNEL
// (an x86_64 bzImage), qemu-system-x86_64 and go, and takes ~10-30 s.
func TestKernelBootsAppRamdisk(t *testing.T) {
	kernel := os.Getenv("ENCLAVE_STORAGE_TEST_KERNEL")
	if kernel == "" {
		t.Skip("set ENCLAVE_STORAGE_TEST_KERNEL to an x86_64 bzImage to boot the app ramdisk under QEMU")
	}
	if testing.Short() {
		t.Skip("boots a VM; skipped with -short")
	}
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Skip("qemu-system-x86_64 not installed (apt-get install qemu-system-x86)")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go not on PATH; needed to build the test init")
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(src, 0o755))
	must(os.WriteFile(filepath.Join(src, "main.go"), []byte(kernelInit), 0o644))
	must(os.WriteFile(filepath.Join(src, "go.mod"), []byte("module eiftestinit\n\ngo 1.21\n"), 0o644))
	bin := filepath.Join(dir, "init")
	build := exec.Command(goBin, "build", "-o", bin, ".")
	build.Dir = src
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64", "GOFLAGS=-mod=mod", "GOWORK=off")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building test init: %v\n%s", err, out)
	}
	exe, err := os.ReadFile(bin)
	must(err)
	var rd bytes.Buffer
	a := AppRamdisk{Enclave: exe, VerityJSON: []byte(`{"root_hash":"4392c1"}`), ConfigJSON: []byte(`{}`), ModTime: 1700000000}
	must(a.Write(context.Background(), &rd))
	initrd := filepath.Join(dir, "app.cpio")
	must(os.WriteFile(initrd, rd.Bytes(), 0o644))
	cmdline, err := PinCmdline("console=ttyS0 panic=-1 quiet", []byte{0x43, 0x92, 0xc1})
	must(err)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	vm := exec.CommandContext(ctx, qemu, "-accel", "tcg", "-m", "256", "-nographic", "-no-reboot",
		"-kernel", kernel, "-initrd", initrd, "-append", cmdline)
	out, err := vm.CombinedOutput()
	if err != nil {
		t.Fatalf("qemu: %v\n%s", err, out)
	}
	want := "EIF-TEST pid=1 init=usr/bin/nbd-enclave verity={\"root_hash\":\"4392c1\"} err=<nil> cmdline=" + cmdline
	if !strings.Contains(string(out), want) {
		t.Fatalf("console lacks %q:\n%s", want, out)
	}
}
