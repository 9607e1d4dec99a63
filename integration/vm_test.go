//go:build integration

package integration

import (
	"bytes"
	"context"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/enclave-storage/enclave-storage/integration/e2e"
	"github.com/enclave-storage/enclave-storage/integration/itest"
)

var (
	hostMode  = flag.Bool("host", false, "run the test binaries directly on this (privileged, modules loaded) host instead of in the microVM")
	guestRun  = flag.String("guest.run", "", "passed as -test.run to every test binary")
	guestTime = flag.Duration("guest.timeout", 0, "passed as -test.timeout to every test binary (0: /init's 5m), for benchmarks that run longer")
	guestPkgs = flag.String("guest.pkgs", "", "comma-separated packages to test; default: every package with integration-tagged tests")
	guestCmds = flag.String("guest.cmds", "nbd-parent,nbd-enclave,imgbuild,nbd-enclave+fakensm,nbd-parent+fakenitro,integration/fake-nitro-cli", "comma-separated ./cmd/NAME binaries to put in the VM's /bin (missing ones are skipped); NAME+TAG builds NAME with build tag TAG as NAME-TAG; DIR/NAME builds ./DIR/NAME; integration/fake-nitro-cli is installed as nitro-cli")
	vmAccel   = flag.String("vm.accel", "tcg", "QEMU accelerator: tcg, or kvm where /dev/kvm works")
	hostRoot  = flag.String("vm.hostroot", "/", "host directory shared read-only with the VM, whose usr/ tests run host tools from (itest.HostTool); \"\" shares none")
	vmTimeout = flag.Duration("vm.timeout", 20*time.Minute, "give up on the VM after this long")
	vmAppend  = flag.String("vm.append", "", "added to the guest kernel's command line, e.g. clocksource=tsc tsc=reliable")
	cacheDir  = flag.String("cache", ".cache", "kernel package cache directory")
	keep      = flag.Bool("keep", false, "keep the artifact directory (out/run-*) even when the run passes")
)

// TestVM builds the test binaries, boots the microVM (or runs them on the
// host with -host), and turns each binary's result into a subtest.
func TestVM(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), *vmTimeout)
	defer cancel()
	moduleDir, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	share := newShare(t, "run-")

	t0 := time.Now()
	pkgs := splitList(*guestPkgs)
	if len(pkgs) == 0 {
		if pkgs, err = TestPackages(ctx, moduleDir); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("test packages: %s", strings.Join(pkgs, " "))
	tests, err := BuildTests(ctx, moduleDir, work, pkgs)
	if err != nil {
		t.Fatal(err)
	}
	var cmds []string // host mode runs the tests only; the VM gets our commands in /bin
	for _, c := range splitList(*guestCmds) {
		if *hostMode {
			break
		}
		pkg, _, _ := strings.Cut(c, "+")
		if m, _ := filepath.Glob(filepath.Join(moduleDir, CommandDir(pkg), "*.go")); len(m) > 0 {
			cmds = append(cmds, c)
		} else {
			t.Logf("cmd/%s has no Go files yet; not in the VM", c)
		}
	}
	commands, err := BuildCommands(ctx, moduleDir, work, cmds)
	if err != nil {
		t.Fatal(err)
	}
	// The fake nitro-cli is the VM's nitro-cli (integration/fake-nitro-cli).
	if p, ok := commands[FakeNitroCLI]; ok {
		commands["nitro-cli"] = p
		delete(commands, FakeNitroCLI)
	}
	t.Logf("built %d test binaries and %d commands in %v", len(tests), len(commands), time.Since(t0).Round(time.Millisecond))
	var args []string
	if *guestRun != "" {
		args = append(args, "-test.run="+*guestRun)
	}
	if *guestTime > 0 {
		// After /init's own -test.timeout: the last one wins.
		args = append(args, "-test.timeout="+guestTime.String())
	}

	console := &lineLogger{t: t}
	var (
		rep     Report
		runErr  error
		scratch string
	)
	if *hostMode {
		h := &Host{Tests: tests, TestArgs: args, OutDir: share}
		rep, runErr = h.Run(ctx, console)
	} else {
		k, err := FetchKernel(ctx, *cacheDir)
		if err != nil {
			t.Fatal(err)
		}
		// The kernel, for tests that build an EIF in the VM (imgbuild
		// --kernel): in the share as e2e.KernelFile.
		if err := linkOrCopy(k.Image, filepath.Join(share, e2e.KernelFile)); err != nil {
			t.Fatal(err)
		}
		mods, err := k.ModulePaths(ctx, DefaultModules()...)
		if err != nil {
			t.Fatal(err)
		}
		in := &Initramfs{Modules: mods, Commands: commands, Tests: tests, TestArgs: args}
		initrd := filepath.Join(work, "initrd.gz")
		if err := in.WriteFile(ctx, initrd); err != nil {
			t.Fatal(err)
		}
		if fi, err := os.Stat(initrd); err == nil {
			t.Logf("kernel %s, %d modules, initramfs %.1f MiB", k.Release, len(mods), float64(fi.Size())/(1<<20))
		}
		scratch = filepath.Join(work, "scratch.img")
		if err := os.WriteFile(scratch, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(scratch, 64<<20); err != nil {
			t.Fatal(err)
		}
		vm := &VM{Accel: *vmAccel, Kernel: k.Image, Initrd: initrd, Drives: []string{scratch}, ShareDir: share, HostRoot: *hostRoot, Append: *vmAppend}
		rep, runErr = vm.Run(ctx, console)
	}
	console.flush()
	if runErr != nil {
		t.Error(runErr)
	}

	if !*hostMode {
		t.Logf("VM boot: %v to /init (guest uptime %.2fs), modules loaded at %.2fs", rep.Boot.Round(time.Millisecond), rep.GuestBoot, rep.ModulesLoaded)
	}
	t.Logf("run: %v total", rep.Total.Round(time.Millisecond))
	for _, r := range rep.Results {
		t.Run(r.Name, func(t *testing.T) {
			t.Logf("%s: %.2fs", r.Name, r.Seconds)
			if !r.Pass {
				t.Errorf("%s failed in the VM; its -test.v output is in the console log above", r.Name)
			}
		})
	}
	if rep.Done && rep.RC != 0 {
		t.Errorf("/init exited with rc=%d", rep.RC)
	}
	got := map[string]bool{}
	for _, r := range rep.Results {
		got[r.Name] = true
	}
	for name := range tests {
		if !got[name] {
			t.Errorf("no result for %s", name)
		}
	}

	// The enclave's first launch left its run image's head in the share:
	// cryptsetup, outside the VM, must accept the header (issue: the run
	// image stays usable by standard tools).
	// A -guest.run that leaves out the first launch leaves no run image.
	if _, ok := tests["integration-e2e"]; ok && rep.Done && !t.Failed() && *guestRun == "" {
		if _, err := exec.LookPath("cryptsetup"); err != nil {
			t.Log("cryptsetup not installed: host-side check of the run image skipped")
		} else if dump, err := e2e.CheckRunImage(context.Background(), share); err != nil {
			t.Error(err)
		} else {
			t.Logf("host: cryptsetup luksDump of the run image the enclave formatted:\n%s", dump)
		}
	}

	// The rig test's artifacts must have made it out.
	if _, ok := tests["integration-itest"]; ok && *guestRun == "" && rep.Done {
		if b, err := os.ReadFile(filepath.Join(share, itest.ArtifactName)); err != nil || string(b) != itest.ArtifactData {
			t.Errorf("artifact from the 9p share: %q, %v; want %q", b, err, itest.ArtifactData)
		}
		if scratch != "" {
			b, err := os.ReadFile(scratch)
			if err != nil || !bytes.HasPrefix(b, []byte(itest.ScratchMessage)) {
				t.Errorf("scratch drive does not start with %q (err %v)", itest.ScratchMessage, err)
			}
		}
	}
}

// FakeNitroCLI is the BuildCommands name of the fake nitro-cli.
const FakeNitroCLI = "fake-nitro-cli"

// linkOrCopy hard-links src to dst, or copies it across filesystems.
func linkOrCopy(src, dst string) error {
	if err := os.Link(src, dst); err == nil {
		return nil
	}
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o644)
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// lineLogger sends whole lines to t.Log, so the console streams into
// go test -v output as it arrives.
type lineLogger struct {
	t   *testing.T
	buf []byte
}

func (l *lineLogger) Write(p []byte) (int, error) {
	l.buf = append(l.buf, p...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			return len(p), nil
		}
		l.t.Log(string(l.buf[:i]))
		l.buf = l.buf[i+1:]
	}
}

func (l *lineLogger) flush() {
	if len(l.buf) > 0 {
		l.t.Log(string(l.buf))
		l.buf = nil
	}
}

// newShare makes the run's 9p share below out/ (concurrent runs must not
// clobber each other's); it stays for inspection when the test fails or
// with -keep.
func newShare(t *testing.T, prefix string) string {
	t.Helper()
	if err := os.MkdirAll("out", 0o755); err != nil {
		t.Fatal(err)
	}
	share, err := os.MkdirTemp("out", prefix)
	if err != nil {
		t.Fatal(err)
	}
	if share, err = filepath.Abs(share); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() || *keep {
			t.Logf("artifacts kept in %s", share)
			return
		}
		os.RemoveAll(share)
	})
	return share
}
