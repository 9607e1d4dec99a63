// Command demo shows the whole system working on one machine, with the
// integration microVM standing in for a Nitro parent instance: it is what
// "make demo" runs.
//
//  1. It builds the binaries and makes a small sample application image
//     (busybox and a script) as an OCI layout, without a registry.
//  2. imgbuild --tag packages it: the EIF (Debian's kernel and modules,
//     nbd-enclave as init), the verity image and nbd-parent, as one OCI
//     image archive. It prints the PCRs and builds a second time to show
//     the same digest, and skopeo inspect reads the image.
//  3. umoci unpacks the image (as docker would), and the microVM runs it
//     the way "docker run --device /dev/nitro_enclaves -v
//     data:/var/lib/enclave IMAGE" would: the image's entrypoint,
//     "nbd-parent run", and the fake nitro-cli of the image's base layer,
//     which starts the EIF's nbd-enclave in its own namespaces
//     (integration/fake-nitro-cli). The image's nbd-parent is built with
//     the fakenitro tag: in the VM the enclave's vsock peer is the
//     loopback, CID 1, not the CID nbd-parent asks nitro-cli for. The
//     application writes to its root filesystem and keeps running; SIGTERM
//     to nbd-parent stops it cleanly. A second launch finds what the first
//     wrote. Then a vsock peer asks for the run image from an nbd-parent
//     that binds it to another CID, and is refused.
//
// The guest half is the test in guest_linux_test.go.
//
// Usage:
//
//	go run ./integration/demo [-v] [-keep]
//
// The demo's run volume key is a file in the EIF's bootstrap ramdisk, so
// anyone holding the EIF holds the key: fine for a demo, never for data.
// A deployment uses a kms: key (see the README).
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/enclave-storage/enclave-storage/cpio"
	"github.com/enclave-storage/enclave-storage/eif"
	"github.com/enclave-storage/enclave-storage/imgsrc/ocitest"
	"github.com/enclave-storage/enclave-storage/integration"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// app is the sample application: it counts its launches and keeps a
// journal on its root filesystem (the overlay whose upper layer is the
// encrypted run volume), prints it, and runs until it is told to stop.
const app = `set -e
mkdir -p /var/lib/app
n=1
[ -f /var/lib/app/launches ] && n=$(($(cat /var/lib/app/launches) + 1))
echo $n > /var/lib/app/launches
echo "launch $n: hello from the enclave" >> /var/lib/app/journal
sync
echo "DEMO-APP launch=$n, /var/lib/app/journal holds:"
sed 's/^/DEMO-APP   /' /var/lib/app/journal
trap 'echo "DEMO-APP got SIGTERM, exiting"; exit 0' TERM
echo "DEMO-APP running until stopped"
while :; do sleep 1; done`

// enclaveConfig is nbd-enclave's measured configuration for the demo:
// the microVM's vsock loopback (CID 1) stands in for the parent (CID 3),
// the key comes from the bootstrap ramdisk, and the keyslot KDF is cheap
// because QEMU's TCG makes argon2id take minutes.
const enclaveConfig = `{"parent": "vsock://1:10809", "heartbeat": "vsock://1:9000",
	"key": "file:/etc/enclave-storage/demo.key",
	"luks_kdf": {"type": "pbkdf2", "iterations": 1000}}`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "demo: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	verbose := fs.Bool("v", false, "print the whole VM console, not only the demo's lines")
	keep := fs.Bool("keep", false, "keep the work directory")
	cache := fs.String("cache", "integration/.cache", "kernel package cache directory")
	accel := fs.String("vm.accel", "tcg", "QEMU accelerator: tcg, or kvm where /dev/kvm works")
	timeout := fs.Duration("timeout", 20*time.Minute, "give up after this long")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: go run ./integration/demo [flags]\n\nBuild a sample application into an enclave image and run it twice in the microVM.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	moduleDir, err := filepath.Abs(".")
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(moduleDir, "go.mod")); err != nil {
		return fmt.Errorf("run from the repository's root: %w", err)
	}
	for _, tool := range []string{"qemu-system-x86_64", "umoci", "skopeo"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s not installed (make deps): %w", tool, err)
		}
	}
	work, err := os.MkdirTemp("", "enclave-demo-")
	if err != nil {
		return err
	}
	if *keep {
		defer fmt.Fprintf(stdout, "work directory kept: %s\n", work)
	} else {
		defer os.RemoveAll(work)
	}
	d := &demo{ctx: ctx, out: stdout, work: work, moduleDir: moduleDir, start: time.Now()}

	d.step("building nbd-parent, nbd-enclave, imgbuild and the fake nitro-cli")
	bins, err := integration.BuildCommands(ctx, moduleDir, work, []string{"nbd-parent", "nbd-parent+fakenitro", "nbd-enclave", "imgbuild", "integration/fake-nitro-cli"})
	if err != nil {
		return err
	}
	guest, err := integration.BuildTests(ctx, moduleDir, work, []string{"./integration/demo"})
	if err != nil {
		return err
	}

	d.step("fetching Debian's kernel (cached in %s)", *cache)
	k, err := integration.FetchKernel(ctx, *cache)
	if err != nil {
		return err
	}
	d.say("kernel %s", k.Release)

	d.step("making the sample application image (an OCI layout, no registry)")
	layout, err := writeApp(work)
	if err != nil {
		return err
	}
	boot, err := writeBootstrap(work)
	if err != nil {
		return err
	}
	cfg := filepath.Join(work, "enclave.json")
	if err := os.WriteFile(cfg, []byte(enclaveConfig), 0o644); err != nil {
		return err
	}
	d.say("app: busybox and a script that counts its launches in /var/lib/app")
	base, err := writeBase(work, bins["fake-nitro-cli"])
	if err != nil {
		return err
	}
	d.say("base: nitro-cli in /usr/bin (here the fake one; in production an image with aws-nitro-enclaves-cli)")

	d.step("imgbuild --in oci:%s:app --tag oci-archive:app-enclave.tar --base oci:base:nitro-cli", filepath.Base(layout))
	build := func(n int) (digest string, err error) {
		out := filepath.Join(work, fmt.Sprintf("out%d", n))
		tag := filepath.Join(work, fmt.Sprintf("app-enclave-%d.tar", n))
		b, err := exec.CommandContext(ctx, bins["imgbuild"], "--in", "oci:"+layout+":app", "--out", out,
			"--kernel", k.Image, "--kernel-modules", k.Root, "--init", bins["nbd-enclave"],
			"--enclave-config", cfg, "--bootstrap", boot,
			"--tag", "oci-archive:"+tag+":app", "--base", "oci:"+base+":nitro-cli", "--parent-bin", bins["nbd-parent-fakenitro"], "--run-size", "64M",
			"--progress", "plain").CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("imgbuild: %w\n%s", err, b)
		}
		m := regexp.MustCompile(`(?m)^digest:\s+(\S+)`).FindSubmatch(b)
		if m == nil {
			return "", fmt.Errorf("imgbuild printed no digest:\n%s", b)
		}
		return string(m[1]), nil
	}
	digest, err := build(1)
	if err != nil {
		return err
	}
	if err := d.printPCRs(filepath.Join(work, "out1", "pcrs.json")); err != nil {
		return err
	}
	d.say("image digest:  %s", digest)
	digest2, err := build(2)
	if err != nil {
		return err
	}
	if digest2 != digest {
		return fmt.Errorf("a second build gave another digest: %s, first %s", digest2, digest)
	}
	d.say("built again:   %s (the same: the build is reproducible)", digest2)
	archive := filepath.Join(work, "app-enclave-1.tar")
	if err := d.inspect(archive); err != nil {
		return err
	}

	d.step("unpacking the image as a container runtime would (umoci unpack --rootless)")
	oci := filepath.Join(work, "oci")
	if b, err := exec.CommandContext(ctx, "skopeo", "copy", "--quiet", "oci-archive:"+archive+":app", "oci:"+oci+":app").CombinedOutput(); err != nil {
		return fmt.Errorf("skopeo copy: %w\n%s", err, b)
	}
	bundle, err := ocitest.UmociUnpack(oci+":app", filepath.Join(work, "bundle"))
	if err != nil {
		return err
	}
	d.say("entrypoint:    %s", strings.Join(bundle.Args, " "))

	d.step("booting the microVM: docker run IMAGE --debug-mode, twice, then a foreign peer")
	mods, err := k.ModulePaths(ctx, integration.DefaultModules()...)
	if err != nil {
		return err
	}
	in := &integration.Initramfs{Modules: mods, Tests: guest, TestArgs: []string{"-test.run=^TestGuest$", "-demo.dir=/out"}}
	initrd := filepath.Join(work, "initrd.gz")
	if err := in.WriteFile(ctx, initrd); err != nil {
		return err
	}
	vm := &integration.VM{Accel: *accel, Kernel: k.Image, Initrd: initrd, ShareDir: work, MemoryM: 1536}
	logPath := filepath.Join(work, "console.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logFile.Close()
	con := &console{out: stdout, verbose: *verbose}
	rep, err := vm.Run(ctx, io.MultiWriter(con, logFile))
	con.flush()
	if err != nil {
		return err
	}
	for _, r := range rep.Results {
		if !r.Pass {
			return fmt.Errorf("the guest's %s failed: the whole console is in %s (kept with -keep; -v prints it)", r.Name, logPath)
		}
	}
	if len(rep.Results) == 0 {
		return errors.New("the guest ran nothing")
	}
	d.step("done in %v", time.Since(d.start).Round(time.Second))
	return nil
}

type demo struct {
	ctx       context.Context
	out       io.Writer
	work      string
	moduleDir string
	start     time.Time
	n         int
}

func (d *demo) step(format string, a ...any) {
	d.n++
	fmt.Fprintf(d.out, "\n[%d] %s\n", d.n, fmt.Sprintf(format, a...))
}

func (d *demo) say(format string, a ...any) {
	fmt.Fprintf(d.out, "    %s\n", fmt.Sprintf(format, a...))
}

func (d *demo) printPCRs(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var m eif.Measurements
	if err := json.Unmarshal(b, &m); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	d.say("PCR0 (kernel, cmdline, ramdisks): %s", m.Measurements.PCR0)
	d.say("PCR1 (kernel, cmdline, bootstrap): %s", m.Measurements.PCR1)
	d.say("PCR2 (application ramdisk):        %s", m.Measurements.PCR2)
	return nil
}

// inspect prints what skopeo, a reader we did not write, sees.
func (d *demo) inspect(archive string) error {
	b, err := exec.CommandContext(d.ctx, "skopeo", "inspect", "oci-archive:"+archive+":app").Output()
	if err != nil {
		return fmt.Errorf("skopeo inspect: %w", err)
	}
	var in struct {
		Digest string
		Layers []string
		Labels map[string]string
	}
	if err := json.Unmarshal(b, &in); err != nil {
		return fmt.Errorf("skopeo inspect: %w", err)
	}
	d.say("skopeo inspect: digest %s, %d layers", in.Digest, len(in.Layers))
	for _, l := range []string{"root-hash", "pcr0"} {
		for k, v := range in.Labels {
			if strings.HasSuffix(k, "."+l) {
				d.say("  label %s=%s", k, v)
			}
		}
	}
	return nil
}

// writeApp writes the sample application's OCI layout.
func writeApp(dir string) (string, error) {
	b, err := os.ReadFile("/bin/busybox")
	if err != nil {
		return "", fmt.Errorf("busybox not installed (make deps): %w", err)
	}
	bb := ocitest.File("bin/busybox", "")
	bb.Body, bb.Mode = b, 0o755
	entries := []ocitest.Entry{ocitest.Dir("bin/"), bb, ocitest.Dir("var/"), ocitest.Dir("var/lib/")}
	for _, a := range []string{"sh", "cat", "echo", "mkdir", "sed", "sleep", "sync"} {
		entries = append(entries, ocitest.Symlink("bin/"+a, "busybox"))
	}
	layer, err := ocitest.Tar(entries...)
	if err != nil {
		return "", err
	}
	layout := filepath.Join(dir, "app-oci")
	_, err = ocitest.WriteLayout(layout, "app", ocitest.Image{
		Layers: [][]byte{layer}, Compression: ocitest.Gzip, Created: ocitest.T0(),
		Config: v1.ImageConfig{Entrypoint: []string{"/bin/sh", "-c"}, Cmd: []string{app}},
	})
	return layout, err
}

// writeBase writes the base image the packaged image sits on: nitro-cli
// in /usr/bin, as an image with aws-nitro-enclaves-cli installed has it.
func writeBase(dir, nitroCLI string) (string, error) {
	b, err := os.ReadFile(nitroCLI)
	if err != nil {
		return "", err
	}
	cli := ocitest.File("usr/bin/nitro-cli", "")
	cli.Body, cli.Mode = b, 0o755
	layer, err := ocitest.Tar(ocitest.Dir("usr/"), ocitest.Dir("usr/bin/"), cli, ocitest.Dir("tmp/"), ocitest.Dir("run/"))
	if err != nil {
		return "", err
	}
	layout := filepath.Join(dir, "base")
	_, err = ocitest.WriteLayout(layout, "nitro-cli", ocitest.Image{
		Layers: [][]byte{layer}, Compression: ocitest.Gzip, Created: ocitest.T0(),
		Config: v1.ImageConfig{Env: []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}},
	})
	return layout, err
}

// writeBootstrap writes the bootstrap ramdisk holding the demo's run
// volume key (imgbuild adds the kernel modules to it).
func writeBootstrap(dir string) (string, error) {
	key := make([]byte, 64)
	f, err := os.Open("/dev/urandom")
	if err != nil {
		return "", err
	}
	_, err = io.ReadFull(f, key)
	f.Close()
	if err != nil {
		return "", err
	}
	var a cpio.Archive
	for _, d := range []string{"etc", "etc/enclave-storage"} {
		if err := a.AddDir(d, 0o755); err != nil {
			return "", err
		}
	}
	if err := a.AddFile("etc/enclave-storage/demo.key", 0o400, key); err != nil {
		return "", err
	}
	p := filepath.Join(dir, "bootstrap.cpio")
	w, err := os.Create(p)
	if err != nil {
		return "", err
	}
	if _, err := a.WriteTo(w); err != nil {
		w.Close()
		return "", err
	}
	return p, w.Close()
}

// console prints the guest's "DEMO|" lines (all lines with verbose).
type console struct {
	out     io.Writer
	verbose bool
	buf     []byte
}

func (c *console) Write(p []byte) (int, error) {
	c.buf = append(c.buf, p...)
	for {
		i := strings.IndexByte(string(c.buf), '\n')
		if i < 0 {
			return len(p), nil
		}
		c.line(string(c.buf[:i]))
		c.buf = c.buf[i+1:]
	}
}

func (c *console) line(l string) {
	l = strings.TrimRight(l, "\r")
	if _, after, ok := strings.Cut(l, "DEMO| "); ok {
		fmt.Fprintf(c.out, "    %s\n", after)
		return
	}
	if c.verbose {
		fmt.Fprintf(c.out, "  | %s\n", l)
	}
}

func (c *console) flush() {
	if len(c.buf) > 0 {
		sc := bufio.NewScanner(strings.NewReader(string(c.buf)))
		for sc.Scan() {
			c.line(sc.Text())
		}
		c.buf = nil
	}
}
