//go:build integration && linux

package e2e

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mdlayher/vsock"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"

	"github.com/enclave-storage/enclave-storage/crypt"
	"github.com/enclave-storage/enclave-storage/dm"
	"github.com/enclave-storage/enclave-storage/enclave"
	"github.com/enclave-storage/enclave-storage/erofs"
	"github.com/enclave-storage/enclave-storage/imgbuild"
	"github.com/enclave-storage/enclave-storage/imgsrc/ocitest"
	"github.com/enclave-storage/enclave-storage/integration/itest"
	"github.com/enclave-storage/enclave-storage/internal/syncbuf"
	"github.com/enclave-storage/enclave-storage/nbdclient"
)

// Paths inside the test image.
const (
	confPath   = "etc/app.conf" // small file, compared on every launch
	confBody   = "greeting=hello from the image\n"
	linkPath   = "etc/app.link"           // symlink to app.conf
	dataPath   = "usr/share/app/data.bin" // large file whose block (c) corrupts
	goneFile   = "etc/removed"            // deleted by the second layer's whiteout
	statePath  = "/var/state"             // written by the application
	stateBody  = "written on the first launch"
	markerPath = "/marker" // (e): fsync'd before the parent is killed
)

// dataBody is dataPath's content: 64 KiB of a pattern that, 4 KiB aligned,
// occurs nowhere else in the image.
func dataBody() []byte {
	b := make([]byte, 64<<10)
	for i := range b {
		b[i] = byte(i*7 + i/4096*13 + 1)
	}
	copy(b, "e2e data file\n")
	return b
}

// rig is what the scenarios share: binaries, the built image, keys.
type rig struct {
	parentBin, enclaveBin, imgbuildBin string
	dir                                string
	img                                string // rootfs.img: erofs + verity tree
	manifest                           imgbuild.Manifest
	cmdline, verityJSON                string // the pinned root hash
	key, otherKey                      string
	run                                string // the run image (a)-(e) share
	port                               uint32
}

func newRig(t *testing.T) *rig {
	t.Helper()
	itest.NeedRoot(t)
	itest.NeedPath(t, dm.ControlPath)
	itest.NeedPath(t, "/sys/module/nbd")
	itest.NeedPath(t, "/dev/vsock")
	r := &rig{dir: t.TempDir(), port: 21000}
	var err error
	for _, b := range []struct {
		p    *string
		name string
	}{{&r.parentBin, "nbd-parent"}, {&r.enclaveBin, "nbd-enclave"}, {&r.imgbuildBin, "imgbuild"}} {
		*b.p, err = exec.LookPath(b.name)
		itest.Need(t, b.name+" binary (the harness puts cmd/* in /bin; imgbuild needs -guest.cmds)", err)
	}
	r.key, r.otherKey = filepath.Join(r.dir, "key"), filepath.Join(r.dir, "other-key")
	write(t, r.key, RunKey)
	write(t, r.otherKey, "not the run volume key")
	r.run = filepath.Join(r.dir, "run.img")
	r.buildImage(t)
	r.cmdline, r.verityJSON = r.pin(t, "pinned", r.manifest.Verity.RootHash)
	return r
}

func write(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

// buildImage writes a two-layer OCI layout (busybox, files, a symlink, a
// whiteout) and runs imgbuild on it.
func (r *rig) buildImage(t *testing.T) {
	t.Helper()
	bbPath, err := exec.LookPath("busybox")
	itest.Need(t, "busybox", err)
	bb, err := os.ReadFile(bbPath)
	if err != nil {
		t.Fatal(err)
	}
	busybox := ocitest.File("bin/busybox", "")
	busybox.Body, busybox.Mode = bb, 0o755
	entries := []ocitest.Entry{ocitest.Dir("bin/"), busybox}
	for _, applet := range []string{"sh", "cat", "echo", "test", "sleep", "sync", "dd", "ls", "readlink", "mkdir", "rm", "true", "seq"} {
		entries = append(entries, ocitest.Symlink("bin/"+applet, "busybox"))
	}
	entries = append(entries,
		ocitest.Dir("etc/"), ocitest.File(confPath, confBody), ocitest.Symlink(linkPath, "app.conf"),
		ocitest.File(goneFile, "the second layer deletes this\n"),
		ocitest.File("etc/passwd", "root:x:0:0::/:/bin/sh\n"),
		ocitest.Dir("usr/"), ocitest.Dir("usr/share/"), ocitest.Dir("usr/share/app/"),
		ocitest.Dir("var/"), ocitest.Dir("tmp/"))
	data := ocitest.File(dataPath, "")
	data.Body = dataBody()
	entries = append(entries, data, ocitest.Dir("evil/"))
	// (g): world-writable nodes of the NBD devices (nbdN is 43:32*N) and
	// of /dev/mem, kept by --keep-devices; the nodev mounts must make
	// them useless. /dev itself is the agent's, bound over the image's.
	for i := range 8 {
		entries = append(entries, ocitest.Entry{Header: tar.Header{Typeflag: tar.TypeBlock, Name: fmt.Sprintf("evil/nbd%d", i),
			Mode: 0o666, Devmajor: 43, Devminor: int64(32 * i), ModTime: ocitest.T0()}})
	}
	entries = append(entries, ocitest.Entry{Header: tar.Header{Typeflag: tar.TypeChar, Name: "evil/mem",
		Mode: 0o666, Devmajor: 1, Devminor: 1, ModTime: ocitest.T0()}})
	base, err := ocitest.Tar(entries...)
	if err != nil {
		t.Fatal(err)
	}
	top, err := ocitest.Tar(ocitest.Whiteout("etc", "removed"))
	if err != nil {
		t.Fatal(err)
	}
	layout := filepath.Join(r.dir, "oci")
	_, err = ocitest.WriteLayout(layout, "app", ocitest.Image{
		Layers:      [][]byte{base, top},
		Compression: ocitest.Gzip,
		Created:     ocitest.T0(),
		Config:      v1.ImageConfig{Entrypoint: []string{"/bin/sh", "-c"}, Cmd: []string{"echo hello"}, Env: []string{"PATH=/bin"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(r.dir, "build")
	t0 := time.Now()
	cmd := exec.Command(r.imgbuildBin, "--in", "oci:"+layout+":app", "--out", out, "--keep-devices")
	b, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("imgbuild: %v\n%s", err, b)
	}
	t.Logf("imgbuild built the image in %v", time.Since(t0).Round(time.Millisecond))
	r.img = filepath.Join(out, "rootfs.img")
	mb, err := os.ReadFile(filepath.Join(out, imgbuild.ManifestFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(mb, &r.manifest); err != nil || r.manifest.Verity == nil {
		t.Fatalf("%s: %v (verity %v)", imgbuild.ManifestFile, err, r.manifest.Verity)
	}
	t.Logf("image: %s, erofs %d bytes, root hash %x", r.img, r.manifest.FSSize, []byte(r.manifest.Verity.RootHash))
}

// pin writes verity.json (imgbuild's parameters with root as the root
// hash) and a kernel command line pinning root, as the EIF's ramdisk and
// command line would carry them.
func (r *rig) pin(t *testing.T, name string, root []byte) (cmdline, verityJSON string) {
	t.Helper()
	d := filepath.Join(r.dir, name)
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	p := *r.manifest.Verity
	p.RootHash = append(p.RootHash[:0:0], root...)
	js, err := json.Marshal(&p)
	if err != nil {
		t.Fatal(err)
	}
	cmdline, verityJSON = filepath.Join(d, "cmdline"), filepath.Join(d, "verity.json")
	write(t, verityJSON, string(js))
	write(t, cmdline, "console=ttyS0 "+enclave.CmdlineVerityRoot+"="+hex.EncodeToString(root)+"\n")
	return cmdline, verityJSON
}

// proc is a started command whose combined output is collected.
type proc struct {
	cmd  *exec.Cmd
	out  syncbuf.Buffer
	done chan struct{}
	err  error
}

func start(t *testing.T, name string, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(name, args...), done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out
	p.start(t)
	return p
}

// start starts p.cmd, whose outputs are set, and kills it at the end of
// the test if it still runs.
func (p *proc) start(t *testing.T) {
	t.Helper()
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", p.cmd.Path, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			p.cmd.Process.Kill()
			<-p.done
		}
	})
}

// waitFor waits until the output matches re and returns the match; it
// fails when the process exits first or after timeout.
func (p *proc) waitFor(t *testing.T, re *regexp.Regexp, timeout time.Duration) []string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if m := re.FindStringSubmatch(p.out.String()); m != nil {
			return m
		}
		select {
		case <-p.done:
			if m := re.FindStringSubmatch(p.out.String()); m != nil {
				return m
			}
			t.Fatalf("%s exited (%v) before printing %q:\n%s", p.cmd.Path, p.err, re, p.out.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not print %q within %v:\n%s", p.cmd.Path, re, timeout, p.out.String())
		}
	}
}

// wait waits for the exit and returns the exit status (128+N for a
// signal).
func (p *proc) wait(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		t.Fatalf("%s still running after %v:\n%s", p.cmd.Path, timeout, p.out.String())
	}
	var ee *exec.ExitError
	switch {
	case p.err == nil:
		return 0
	case errors.As(p.err, &ee):
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return ee.ExitCode()
	}
	t.Fatalf("%s: %v", p.cmd.Path, p.err)
	return -1
}

// parent starts nbd-parent serving image read-only and run read-write
// (created sparse at 64 MiB) on vsock, and waits until it listens.
func (r *rig) parent(t *testing.T, image string, flags ...string) *proc {
	t.Helper()
	p := start(t, r.parentBin, append([]string{"--listen", fmt.Sprintf("vsock://:%d", r.port),
		"--export", "image=" + image + ",ro", "--export", "run=" + r.run + ",size=64M"}, flags...)...)
	p.waitFor(t, regexp.MustCompile(`msg=listening`), 30*time.Second)
	return p
}

// stop ends nbd-parent with SIGTERM and expects a clean exit.
func (p *proc) stop(t *testing.T) {
	t.Helper()
	p.cmd.Process.Signal(unix.SIGTERM)
	if rc := p.wait(t, 30*time.Second); rc != 0 {
		t.Errorf("nbd-parent exited %d after SIGTERM:\n%s", rc, p.out.String())
	}
}

// launch options for one nbd-enclave run.
type launch struct {
	key                 string   // default r.key
	keySpec             string   // --key verbatim, instead of file:key
	bin                 string   // default r.enclaveBin
	cmdline, verityJSON string   // default the correct pin
	flags               []string // more nbd-enclave flags
}

// enclave starts nbd-enclave with the application script run by the
// image's busybox sh, and returns it with the application's root (the
// overlay mount, through which the test can talk to the application).
func (r *rig) enclave(t *testing.T, l launch, script string) (p *proc, root string) {
	t.Helper()
	if l.key == "" {
		l.key = r.key
	}
	if l.cmdline == "" {
		l.cmdline, l.verityJSON = r.cmdline, r.verityJSON
	}
	if l.keySpec == "" {
		l.keySpec = "file:" + l.key
	}
	if l.bin == "" {
		l.bin = r.enclaveBin
	}
	mnt := t.TempDir()
	root = filepath.Join(mnt, "root")
	return start(t, l.bin, append([]string{
		"--parent", fmt.Sprintf("vsock://1:%d", r.port), "--key", l.keySpec,
		"--lower", filepath.Join(mnt, "lower"), "--upper", filepath.Join(mnt, "upper"), "--root", root,
		"--cmdline", l.cmdline, "--verity-json", l.verityJSON,
		"--stop-grace", "5s", "--nbd-dead-conn-timeout", "60s"},
		append(l.flags, "--", "/bin/sh", "-c", script)...)...), root
}

// scenario runs f as a subtest and prints the SCENARIO line the issue asks
// for; it reports whether f passed.
func scenario(t *testing.T, name string, f func(t *testing.T)) bool {
	t0 := time.Now()
	ok := t.Run(name, f)
	res := "PASS"
	if !ok {
		res = "FAIL"
	}
	fmt.Printf("SCENARIO %s %s %.2f\n", name, res, time.Since(t0).Seconds())
	return ok
}

func fileSum(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

func contains(t *testing.T, p *proc, want ...string) {
	t.Helper()
	out := p.out.String()
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}
}

var (
	appStarted = regexp.MustCompile(`(?m)^app-started$`)
	appReady   = regexp.MustCompile(`(?m)^app-ready$`)
)

// The application scripts, run by the image's busybox sh. They print the
// kernel devices from /sys (bound into the root) to show what serves them.
const (
	showKernel = `for d in /sys/block/dm-*; do echo "KERNEL $(basename $d) dm-name=$(cat $d/dm/name) ro=$(cat $d/ro)"; done
for d in /sys/block/nbd*; do if [ -e $d/pid ]; then echo "KERNEL $(basename $d) pid=$(cat $d/pid) sectors=$(cat $d/size) ro=$(cat $d/ro)"; fi; done
`
	firstApp = `set -e
echo app-started
test "$(cat /etc/app.conf)" = "greeting=hello from the image"
test "$(readlink /etc/app.link)" = app.conf
test "$(cat /etc/app.link)" = "greeting=hello from the image"
test ! -e /etc/removed
echo "written on the first launch" > /var/state
sync
` + showKernel + `echo app-ready
while [ ! -e /go ]; do sleep 0.1; done
echo app-done
`
	secondApp = `set -e
echo app-started
test "$(cat /var/state)" = "written on the first launch"
test "$(cat /etc/app.conf)" = "greeting=hello from the image"
test "$(readlink /etc/app.link)" = app.conf
test ! -e /etc/removed
test -e /go
echo second-ok
`
	corruptApp = `echo app-started
cat /etc/app.conf > /dev/null || exit 10
if cat /usr/share/app/data.bin > /dev/null 2> /tmp/err; then echo corrupt-read=ok; else echo "corrupt-read=failed err=$(cat /tmp/err)"; fi
`
	killApp = `set -e
echo app-started
echo "fsynced before the kill" > /marker
sync
echo marker-synced
i=0
while [ ! -e /stop ]; do
	i=$((i+1))
	dd if=/dev/zero of=/junk.$((i % 4)) bs=64k count=8 conv=fsync 2> /dev/null || echo "write $i failed"
done
echo "loop-ended after $i writes"
`
	markerApp = `set -e
echo app-started
test "$(cat /marker)" = "fsynced before the kill"
test "$(cat /var/state)" = "written on the first launch"
echo marker-intact
`
	roApp = `echo app-started
` + showKernel + `dev=""
for d in /sys/block/nbd*; do if [ -e $d/pid ] && [ "$(cat $d/ro)" = 1 ]; then dev=/dev/$(basename $d); fi; done
echo "image-device=$dev"
if dd if=/dev/zero of=$dev bs=4096 count=1 seek=1 conv=fsync,notrunc 2> /tmp/err; then echo nbd-write=ok; else echo "nbd-write=refused err=$(cat /tmp/err)"; fi
if dd if=/dev/zero of=/dev/mapper/image bs=4096 count=1 conv=fsync,notrunc 2> /tmp/err; then echo dm-write=ok; else echo "dm-write=refused err=$(cat /tmp/err)"; fi
`
)

// devApp opens the image's device nodes (g) and, for comparison, the
// agent's node of the run device, which the application (root in the
// enclave) may open.
const devApp = `echo app-started
for n in /evil/*; do
	if dd if=$n of=/dev/null bs=4096 count=1 2> /tmp/err; then echo "image-node ${n##*/}=opened"; else echo "image-node ${n##*/}=refused err=$(cat /tmp/err)"; fi
done
for d in /sys/block/nbd*; do if [ -e $d/pid ] && [ "$(cat $d/ro)" = 0 ]; then
	echo "run-device=${d##*/} dev=$(cat $d/dev)"
	if dd if=/dev/${d##*/} of=/dev/null bs=4096 count=1 2> /tmp/err; then echo real-node=opened; else echo "real-node=refused err=$(cat /tmp/err)"; fi
fi; done
`

// TestScenarios runs issue 6's scenarios in order: (b) to (f) reuse the
// run image of (a).
func TestScenarios(t *testing.T) {
	t0 := time.Now()
	r := newRig(t)
	t.Logf("setup (imgbuild) took %v", time.Since(t0).Round(time.Millisecond))
	ctx := context.Background()
	var firstMS, secondMS, pbkdfMS int64

	if !scenario(t, "a-first-launch", func(t *testing.T) {
		p := r.parent(t, r.img)
		defer p.stop(t)
		t0 := time.Now()
		e, root := r.enclave(t, launch{}, firstApp)
		e.waitFor(t, appStarted, 4*time.Minute)
		firstMS = time.Since(t0).Milliseconds()
		e.waitFor(t, appReady, time.Minute)
		logTables(t, ctx)
		checkExt4(t, "/dev/mapper/run")
		if err := os.WriteFile(filepath.Join(root, "go"), nil, 0o644); err != nil {
			t.Fatalf("signalling the application through its root: %v", err)
		}
		if rc := e.wait(t, time.Minute); rc != 0 {
			t.Fatalf("nbd-enclave exited %d:\n%s", rc, e.out.String())
		}
		contains(t, e, "app-done", "KERNEL dm-0", "dm-name=image", "dm-name=run", "state=blank")
		t.Logf("nbd-enclave:\n%s", e.out.String())
		head := make([]byte, 6)
		f, err := os.Open(r.run)
		if err != nil {
			t.Fatal(err)
		}
		f.ReadAt(head, 0)
		f.Close()
		if !bytes.Equal(head, []byte("LUKS\xba\xbe")) {
			t.Fatalf("run image starts with %q after the first launch, want a LUKS2 header", head)
		}
		p.stop(t)
		leaveArtifact(t, r.run)
	}) {
		t.Fatal("the other scenarios need the first launch")
	}

	// Swap the argon2id keyslot for a cheap PBKDF2 one (see doc.go); the
	// time the argon2id unlock takes is the PBKDF time of a launch.
	t.Run("cheap-keyslot", func(t *testing.T) {
		f, err := os.OpenFile(r.run, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		key, err := os.ReadFile(r.key)
		if err != nil {
			t.Fatal(err)
		}
		t0 := time.Now()
		slot, err := crypt.AddKey(ctx, f, key, key, &crypt.KDF{Type: crypt.PBKDF2, Iterations: 1000})
		if err != nil {
			t.Fatalf("crypt.AddKey: %v", err)
		}
		pbkdfMS = time.Since(t0).Milliseconds()
		for s := range 32 {
			if s != slot {
				crypt.KillSlot(ctx, f, s) // errors for inactive slots
			}
		}
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
		t.Logf("argon2id unlock (crypt.AddKey) took %d ms; keyslot %d is now PBKDF2", pbkdfMS, slot)
	})

	scenario(t, "b-second-launch", func(t *testing.T) {
		p := r.parent(t, r.img)
		defer p.stop(t)
		t0 := time.Now()
		e, _ := r.enclave(t, launch{}, secondApp)
		e.waitFor(t, appStarted, 2*time.Minute)
		secondMS = time.Since(t0).Milliseconds()
		if rc := e.wait(t, time.Minute); rc != 0 {
			t.Fatalf("nbd-enclave exited %d:\n%s", rc, e.out.String())
		}
		contains(t, e, "second-ok", "state=LUKS")
		logSteps(e.out.String())
	})
	fmt.Printf("E2E-TIMING mount_ms=%d pbkdf_ms=%d first_launch_ms=%d\n", secondMS, pbkdfMS, firstMS)

	scenario(t, "c-corrupt-block", func(t *testing.T) {
		bad := r.corruptCopy(t)
		p := r.parent(t, bad)
		defer p.stop(t)
		e, _ := r.enclave(t, launch{}, corruptApp)
		if rc := e.wait(t, 2*time.Minute); rc != 0 {
			t.Fatalf("nbd-enclave exited %d:\n%s", rc, e.out.String())
		}
		contains(t, e, "corrupt-read=failed")
		// EIO's text: "Input/output error" (glibc), "I/O error" (musl).
		if !regexp.MustCompile(`corrupt-read=failed err=.*(Input/output|I/O) error`).MatchString(e.out.String()) {
			t.Errorf("reading the corrupted file did not fail with EIO:\n%s", e.out.String())
		}
		if strings.Contains(e.out.String(), "corrupt-read=ok") {
			t.Error("the corrupted file read back without an error")
		}
	})

	scenario(t, "c-wrong-root-hash", func(t *testing.T) {
		root := append([]byte(nil), r.manifest.Verity.RootHash...)
		root[0] ^= 0xff
		cmdline, vj := r.pin(t, "wrong-root", root)
		p := r.parent(t, r.img)
		defer p.stop(t)
		e, _ := r.enclave(t, launch{cmdline: cmdline, verityJSON: vj}, "echo app-started")
		if rc := e.wait(t, 2*time.Minute); rc == 0 {
			t.Fatalf("nbd-enclave mounted an image under the wrong root hash:\n%s", e.out.String())
		}
		contains(t, e, "does not match the pinned dm-verity root hash")
		if appStarted.MatchString(e.out.String()) {
			t.Error("the application ran")
		}
		t.Logf("nbd-enclave:\n%s", e.out.String())
	})

	scenario(t, "d-wrong-key", func(t *testing.T) {
		before := fileSum(t, r.run)
		p := r.parent(t, r.img)
		e, _ := r.enclave(t, launch{key: r.otherKey}, "echo app-started")
		rc := e.wait(t, 2*time.Minute)
		p.stop(t)
		if rc == 0 {
			t.Fatalf("nbd-enclave ran with the wrong key:\n%s", e.out.String())
		}
		contains(t, e, "does not unlock the run volume")
		if appStarted.MatchString(e.out.String()) {
			t.Error("the application ran")
		}
		if fileSum(t, r.run) != before {
			t.Error("a refused key changed the run image")
		}
		t.Logf("nbd-enclave:\n%s", e.out.String())
	})

	// (d) too: a parent that zeroes the run image's header area (LUKS
	// header and keyslots) must not get a silently reformatted volume.
	scenario(t, "d-header-wiped", func(t *testing.T) {
		orig := r.run
		defer func() { r.run = orig }()
		r.run = filepath.Join(r.dir, "run-wiped.img")
		b, err := os.ReadFile(orig)
		if err != nil {
			t.Fatal(err)
		}
		clear(b[:16<<20])
		if err := os.WriteFile(r.run, b, 0o600); err != nil {
			t.Fatal(err)
		}
		before := fileSum(t, r.run)
		p := r.parent(t, r.img)
		e, _ := r.enclave(t, launch{}, "echo app-started")
		rc := e.wait(t, 2*time.Minute)
		p.stop(t)
		t.Logf("nbd-enclave:\n%s", e.out.String())
		if rc == 0 {
			t.Fatal("nbd-enclave ran on a run image with a wiped header")
		}
		contains(t, e, "header area is zeroed but its data area is not")
		if appStarted.MatchString(e.out.String()) {
			t.Error("the application ran")
		}
		if fileSum(t, r.run) != before {
			t.Error("the wiped run image was written to")
		}
	})

	scenario(t, "e-parent-killed", func(t *testing.T) {
		p := r.parent(t, r.img)
		// Requests in flight when the parent dies are resent only when
		// they time out (the kernel does not requeue them on
		// reconfigure): a 10 s request timeout instead of 30 s keeps the
		// stall short.
		e, root := r.enclave(t, launch{flags: []string{"--nbd-timeout", "10s"}}, killApp)
		e.waitFor(t, regexp.MustCompile(`(?m)^marker-synced$`), 2*time.Minute)
		time.Sleep(300 * time.Millisecond) // let some writes be in flight
		if err := p.cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		if rc := p.wait(t, 30*time.Second); rc != 128+int(unix.SIGKILL) {
			t.Errorf("nbd-parent exited %d, want death by SIGKILL", rc)
		}
		time.Sleep(time.Second)
		p = r.parent(t, r.img)
		if err := os.WriteFile(filepath.Join(root, "stop"), nil, 0o644); err != nil {
			t.Fatalf("signalling the application: %v", err)
		}
		rc := e.wait(t, 2*time.Minute)
		t.Logf("nbd-enclave:\n%s", e.out.String())
		if rc != 0 {
			t.Errorf("nbd-enclave exited %d after the parent restart", rc)
		}
		contains(t, e, "NBD link restored", "loop-ended")
		if m := regexp.MustCompile(`(?m)^write \d+ failed$`).FindAllString(e.out.String(), -1); len(m) > 0 {
			t.Errorf("%d of the application's writes failed across the parent restart (%s...)", len(m), m[0])
		}
		p.stop(t)

		p = r.parent(t, r.img)
		defer p.stop(t)
		e, _ = r.enclave(t, launch{}, markerApp)
		if rc := e.wait(t, 2*time.Minute); rc != 0 {
			t.Fatalf("launch after the parent was killed: nbd-enclave exited %d:\n%s", rc, e.out.String())
		}
		contains(t, e, "marker-intact")
	})

	scenario(t, "f-read-only-export", func(t *testing.T) {
		before := fileSum(t, r.img)
		// nbd-parent's metrics are on TCP; the VM's init brings lo up.
		const metricsAddr = "127.0.0.1:9810"
		p := r.parent(t, r.img, "--metrics-addr", metricsAddr)
		e, _ := r.enclave(t, launch{}, roApp)
		rc := e.wait(t, 2*time.Minute)
		t.Logf("nbd-enclave:\n%s", e.out.String())
		if rc != 0 {
			t.Fatalf("nbd-enclave exited %d", rc)
		}
		contains(t, e, "image-device=/dev/nbd", "nbd-write=refused", "dm-write=refused")
		// The kernel refuses above; the server must refuse too, for a
		// client that ignores the read-only flag.
		if err := rawWrite(ctx, r.port, "image"); err != nil {
			t.Error(err)
		}
		// nbd-parent counts the refusal.
		if m, err := scrape("http://" + metricsAddr + "/metrics"); err != nil {
			t.Logf("nbd-parent metrics not reachable (%v); the refusal is shown by the client above", err)
		} else if line := regexp.MustCompile(`(?m)^nbd_request_errors_total\{export="image",op="write"\} [1-9].*$`).FindString(m); line == "" {
			t.Errorf("nbd-parent metrics do not count the refused write:\n%s", m)
		} else {
			fmt.Printf("nbd-parent metrics: %s\n", line)
		}
		p.stop(t)
		t.Logf("nbd-parent:\n%s", p.out.String())
		if fileSum(t, r.img) != before {
			t.Error("the image file changed")
		}
	})

	scenario(t, "g-device-node", func(t *testing.T) {
		p := r.parent(t, r.img)
		defer p.stop(t)
		e, _ := r.enclave(t, launch{}, devApp)
		rc := e.wait(t, 2*time.Minute)
		t.Logf("nbd-enclave:\n%s", e.out.String())
		if rc != 0 {
			t.Fatalf("nbd-enclave exited %d", rc)
		}
		out := e.out.String()
		m := regexp.MustCompile(`(?m)^run-device=nbd(\d+) dev=43:(\d+)$`).FindStringSubmatch(out)
		if m == nil {
			t.Fatal("no run device found")
		}
		// The image's node for the run device, and every other, is refused
		// (nodev), while the agent's own node of it opens: the node is
		// right, nodev is what stops it.
		contains(t, e, "real-node=opened", "image-node nbd"+m[1]+"=refused", "image-node mem=refused")
		if n := strings.Count(out, "=refused err="); n != 9 || strings.Contains(out, "image-node nbd"+m[1]+"=opened") {
			t.Errorf("%d of the image's 9 device nodes refused", n)
		}
		if regexp.MustCompile(`(?m)^image-node \S+=opened$`).MatchString(out) {
			t.Error("an image device node opened")
		}
	})
}

// logTables prints the device-mapper tables in use, crypt keys redacted.
func logTables(t *testing.T, ctx context.Context) {
	t.Helper()
	devs, err := dm.List(ctx)
	if err != nil {
		t.Errorf("dm.List: %v", err)
		return
	}
	for _, d := range devs {
		lines, err := dm.Table(ctx, d.Name)
		if err != nil {
			t.Errorf("dm.Table(%s): %v", d.Name, err)
			continue
		}
		for _, l := range lines {
			params := strings.Fields(l.Params)
			if l.Type == "crypt" && len(params) > 1 {
				params[1] = "<key redacted>"
			}
			fmt.Printf("KERNEL dm-table %s: %d %d %s %s\n", d.Name, l.Start, l.Length, l.Type, strings.Join(params, " "))
		}
	}
}

// leaveArtifact copies the run image into the artifact directory for the
// host-side luksDump check (sparse: only non-zero blocks are written).
func leaveArtifact(t *testing.T, run string) {
	t.Helper()
	dir := itest.OutDir()
	if dir == "" {
		t.Log("no artifact directory; run image not kept")
		return
	}
	dst := filepath.Join(dir, ArtifactRunImage)
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	in, err := os.Open(run)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	// All of it: the LUKS2 header and keyslots (the first 16 MiB) for
	// cryptsetup, and the ciphertext, which the host check decrypts for
	// e2fsck.
	fi, err := in.Stat()
	if err != nil {
		t.Fatal(err)
	}
	keep := fi.Size()
	buf := make([]byte, 1<<20)
	zero := make([]byte, len(buf))
	for off := int64(0); off < keep; off += int64(len(buf)) {
		n, err := in.ReadAt(buf, off)
		if n > 0 && !bytes.Equal(buf[:n], zero[:n]) {
			if _, err := out.WriteAt(buf[:n], off); err != nil {
				t.Fatal(err)
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := out.Truncate(keep); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	t.Logf("run image left in %s", dst)
}

// corruptCopy copies the image and flips one byte inside a data block of
// dataPath, located by its content and confirmed with the erofs reader.
func (r *rig) corruptCopy(t *testing.T) string {
	t.Helper()
	img, err := os.ReadFile(r.img)
	if err != nil {
		t.Fatal(err)
	}
	want := dataBody()
	fsImg := img[:r.manifest.FSSize]
	fsys, err := erofs.Open(bytes.NewReader(fsImg), int64(len(fsImg)))
	if err != nil {
		t.Fatalf("erofs.Open(%s): %v", r.img, err)
	}
	if got, err := fsys.ReadFile(dataPath); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("erofs reader: %s does not hold the layer's content (err %v)", dataPath, err)
	}
	chunk := want[4096:8192]
	off := bytes.Index(fsImg, chunk)
	if off < 0 || off%4096 != 0 || bytes.Contains(fsImg[off+1:], chunk) {
		t.Fatalf("block 1 of %s is not at one 4 KiB aligned place in the image (offset %d)", dataPath, off)
	}
	off += 100
	img[off] ^= 0xff
	fsys, err = erofs.Open(bytes.NewReader(img[:r.manifest.FSSize]), r.manifest.FSSize)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := fsys.ReadFile(dataPath); err != nil || bytes.Equal(got, want) {
		t.Fatalf("flipping byte %d did not change %s (err %v)", off, dataPath, err)
	}
	t.Logf("flipped the byte at offset %d, inside %s", off, dataPath)
	bad := filepath.Join(r.dir, "corrupt.img")
	if err := os.WriteFile(bad, img, 0o644); err != nil {
		t.Fatal(err)
	}
	return bad
}

// rawWrite connects to nbd-parent as a client that ignores the read-only
// flag and sends a write to export; the server must refuse it (EPERM).
func rawWrite(ctx context.Context, port uint32, export string) error {
	conn, err := vsock.Dial(vsock.Local, port, nil)
	if err != nil {
		return fmt.Errorf("dialing nbd-parent: %w", err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	exp, err := nbdclient.Handshake(ctx, conn, export)
	if err != nil {
		return fmt.Errorf("handshake: %w", err)
	}
	if !exp.ReadOnly() {
		return fmt.Errorf("export %q is not flagged read-only", export)
	}
	const (
		requestMagic = 0x25609513
		replyMagic   = 0x67446698
		cmdWrite     = 1
		cmdDisc      = 2
		ePerm        = 1
	)
	req := make([]byte, 28+4096)
	binary.BigEndian.PutUint32(req[0:], requestMagic)
	binary.BigEndian.PutUint16(req[6:], cmdWrite)
	binary.BigEndian.PutUint64(req[8:], 0xe2e)
	binary.BigEndian.PutUint64(req[16:], 4096)
	binary.BigEndian.PutUint32(req[24:], 4096)
	if _, err := conn.Write(req); err != nil {
		return fmt.Errorf("sending a write: %w", err)
	}
	rep := make([]byte, 16)
	if _, err := io.ReadFull(conn, rep); err != nil {
		return fmt.Errorf("reading the reply to a write: %w", err)
	}
	if m, h := binary.BigEndian.Uint32(rep), binary.BigEndian.Uint64(rep[8:]); m != replyMagic || h != 0xe2e {
		return fmt.Errorf("reply magic %#x handle %#x", m, h)
	}
	errno := binary.BigEndian.Uint32(rep[4:])
	if errno != ePerm {
		return fmt.Errorf("write to read-only export %q answered with error %d, want EPERM (1)", export, errno)
	}
	disc := make([]byte, 28)
	binary.BigEndian.PutUint32(disc[0:], requestMagic)
	binary.BigEndian.PutUint16(disc[6:], cmdDisc)
	conn.Write(disc)
	return nil
}

// scrape fetches a Prometheus text page.
func scrape(url string) (string, error) {
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return string(b), err
}

// checkExt4 reads the superblock of the first launch's run volume through
// dm-crypt and checks it is ext4 (a journal, extents) as the enclave's Go
// formatter (package ext4) makes it: the VM has no mkfs.ext4 at all.
func checkExt4(t *testing.T, dev string) {
	t.Helper()
	sb := make([]byte, 1024)
	f, err := os.Open(dev)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.ReadAt(sb, 1024); err != nil {
		t.Fatalf("reading the superblock of %s: %v", dev, err)
	}
	const (
		hasJournal   = 0x4   // s_feature_compat
		extents      = 0x40  // s_feature_incompat
		metadataCsum = 0x400 // s_feature_ro_compat
	)
	magic := binary.LittleEndian.Uint16(sb[0x38:])
	compat := binary.LittleEndian.Uint32(sb[0x5c:])
	incompat := binary.LittleEndian.Uint32(sb[0x60:])
	roCompat := binary.LittleEndian.Uint32(sb[0x64:])
	if magic != 0xef53 || compat&hasJournal == 0 || incompat&extents == 0 || roCompat&metadataCsum == 0 {
		t.Fatalf("%s: magic %#x compat %#x incompat %#x ro_compat %#x: not ext4 (journal, extents, metadata_csum)", dev, magic, compat, incompat, roCompat)
	}
	fmt.Printf("KERNEL %s ext4 compat=%#x incompat=%#x ro_compat=%#x\n", dev, compat, incompat, roCompat)
}

var logLine = regexp.MustCompile(`(?m)^time=(\S+) level=\w+ msg=("[^"]*"|\S+)`)

// logSteps prints when each of nbd-enclave's log messages up to the
// application's start came, in ms after the first, to show where the
// mount time goes.
func logSteps(out string) {
	var first time.Time
	for _, m := range logLine.FindAllStringSubmatch(out, -1) {
		ts, err := time.Parse(time.RFC3339Nano, m[1])
		if err != nil {
			continue
		}
		if first.IsZero() {
			first = ts
		}
		msg := strings.Trim(m[2], `"`)
		fmt.Printf("E2E-STEP +%dms %s\n", ts.Sub(first).Milliseconds(), msg)
		if msg == "application started" {
			return
		}
	}
}
