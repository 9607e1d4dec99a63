package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/enclave-storage/enclave-storage/integration"
	"github.com/enclave-storage/enclave-storage/kmod"
)

// TestBootEIFLoadsModules builds an EIF with --kernel-modules from
// Debian's kernel package (integration/.cache), then boots exactly its
// kernel, cmdline and ramdisks (concatenated in EIF order, as Nitro loads
// them) under QEMU with a stand-in init (testdata/kmodinit) that loads
// the modules as nbd-enclave does. The kernel is the oracle: its cpio
// unpacker must find the modules, finit_module must accept each, and
// /proc/modules must list them. It takes a minute or two under TCG, so it
// runs only with ENCLAVE_STORAGE_BOOT_TEST=1.
func TestBootEIFLoadsModules(t *testing.T) {
	if os.Getenv("ENCLAVE_STORAGE_BOOT_TEST") != "1" || testing.Short() {
		t.Skip("set ENCLAVE_STORAGE_BOOT_TEST=1 to boot an EIF under QEMU (a minute or two)")
	}
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Skip("qemu-system-x86_64 not installed (apt-get install qemu-system-x86)")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go not on PATH; needed to build the test init")
	}
	root, vmlinuz := debianKernel(t)
	dir := t.TempDir()
	initBin := filepath.Join(dir, "kmodinit")
	build := exec.Command(goBin, "build", "-o", initBin, "./testdata/kmodinit")
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the test init: %v\n%s", err, out)
	}
	names := "+vsock_loopback"
	writeTestLayout(t, filepath.Join(dir, "layout"))
	env, out, errb := testEnv()
	if rc := run(context.Background(), env, []string{"build", "--in", "oci:" + dir + "/layout:app", "--out", dir + "/out",
		"--kernel", vmlinuz, "--init", initBin, "--kernel-modules", root, "--kernel-module-names", names,
		"--progress", "plain"}); rc != 0 { // imgbuild's default cmdline, nitro-cli's "nomodules" included
		t.Fatalf("build: rc %d\n%s%s", rc, out, errb)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	// Take the EIF apart as Nitro does: kernel, cmdline, ramdisks in order.
	boot, err := integration.ExtractEIF(ctx, filepath.Join(dir, "out", "enclave.eif"), dir)
	if err != nil {
		t.Fatal(err)
	}
	vm := exec.CommandContext(ctx, qemu, "-accel", "tcg", "-m", "512", "-nographic", "-no-reboot",
		"-kernel", boot.Kernel, "-initrd", boot.Initrd, "-append", boot.Cmdline)
	console, err := vm.CombinedOutput()
	if err != nil {
		t.Fatalf("qemu: %v\n%s", err, console)
	}

	tr, err := kmod.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	want, err := tr.Resolve(kmod.ParseNames(names))
	if err != nil {
		t.Fatal(err)
	}
	var wantNames []string
	for _, m := range want {
		wantNames = append(wantNames, m.Name)
	}
	m := regexp.MustCompile(`KMOD-TEST loaded=(\S*) err=(.*)\r?\n`).FindSubmatch(console)
	p := regexp.MustCompile(`KMOD-TEST proc=(\S*)`).FindSubmatch(console)
	if m == nil || p == nil {
		t.Fatalf("no KMOD-TEST lines on the console:\n%s", console)
	}
	if strings.TrimSpace(string(m[2])) != "<nil>" {
		t.Fatalf("loading failed in the guest: %s", m[2])
	}
	if got := strings.Split(string(m[1]), ","); !slices.Equal(got, wantNames) {
		t.Errorf("guest loaded %v, want %v", got, wantNames)
	}
	inProc := strings.Split(string(p[1]), ",")
	for _, n := range wantNames {
		if !slices.Contains(inProc, n) {
			t.Errorf("%s not in the guest's /proc/modules %v", n, inProc)
		}
	}
	t.Logf("guest loaded %d modules from the EIF's bootstrap ramdisk: %s", len(wantNames), m[1])
	if a := regexp.MustCompile(`KMOD-TEST argv=.*`).Find(console); a != nil {
		t.Logf("cmdline %q gave init %s", boot.Cmdline, a)
	}
}
