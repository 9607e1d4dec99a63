//go:build integration && linux

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/enclave-storage/enclave-storage/cpio"
	"github.com/enclave-storage/enclave-storage/integration/itest"
	"github.com/enclave-storage/enclave-storage/nbd/nbdtest"
	"github.com/enclave-storage/enclave-storage/nbdclient"
)

// superviseApp is the EIF's application under nbd-parent run: it reports
// what the previous launch left, writes and fsyncs a file on the run
// volume, and sleeps until SIGTERM, which it traps and records (fsync'd)
// before exiting 0.
const superviseApp = `trap 'echo "stopped by SIGTERM" > /var/term-marker; sync; echo app-trapped-term; exit 0' TERM
echo "app-found data=$(cat /var/data 2>/dev/null || echo none) marker=$(cat /var/term-marker 2>/dev/null || echo none)"
echo "written by launch $(( $(cat /var/launches 2>/dev/null || echo 0) + 1 ))" > /var/data
echo $(( $(cat /var/launches 2>/dev/null || echo 0) + 1 )) > /var/launches
sync
echo app-ready
while true; do sleep 0.2; done
`

// TestSupervise (issue 13): nbd-parent run, the image's entrypoint, with
// the fake nitro-cli as nitro-cli, on an EIF imgbuild built: the
// application writes and fsyncs and sleeps; SIGTERM to nbd-parent stops
// it cleanly over the control channel (the application traps SIGTERM and
// records it), the enclave unmounts and reports down clean, nbd-parent
// exits 0; a second nbd-parent run finds the data and the marker. While
// it runs, a peer other than the enclave (TCP, no vsock CID) is refused
// both exports and sees none listed.
func TestSupervise(t *testing.T) {
	_, err := exec.LookPath("nitro-cli")
	itest.Need(t, "nitro-cli (the harness installs integration/fake-nitro-cli as nitro-cli)", err)
	parentBin, err := exec.LookPath("nbd-parent-fakenitro")
	itest.Need(t, "nbd-parent-fakenitro (nbd-parent built with -tags fakenitro; -guest.cmds nbd-parent+fakenitro)", err)
	kernel := filepath.Join(itest.OutDir(), KernelFile)
	_, err = os.Stat(kernel)
	itest.Need(t, "the VM's kernel in the artifact directory", err)
	r := newRig(t)
	r.port = 21300
	t.Setenv("NITRO_CLI_STATE", filepath.Join(r.dir, "nitro-state"))

	// The run volume's key, the same on both launches: a file in the
	// bootstrap ramdisk (mode 0600, as keys.File insists), a test's
	// stand-in for a key from KMS.
	var boot cpio.Archive
	key := bytes.Repeat([]byte("supervise-key!"), 3)
	if err := boot.AddDir("etc", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := boot.AddFile("etc/run.key", 0o600, key); err != nil {
		t.Fatal(err)
	}
	var bootBuf bytes.Buffer
	if _, err := boot.WriteTo(&bootBuf); err != nil {
		t.Fatal(err)
	}
	bootPath := filepath.Join(r.dir, "bootstrap.cpio")
	write(t, bootPath, bootBuf.String())

	app, _ := json.Marshal(map[string]any{"entrypoint": []string{"/bin/sh", "-c"}, "cmd": []string{superviseApp}, "env": []string{"PATH=/bin"}})
	cfg := filepath.Join(r.dir, "supervise.json")
	write(t, cfg, fmt.Sprintf(`{"parent": "vsock://1:%d", "heartbeat": "vsock://1:9000", "key": "file:/etc/run.key",
		"luks_kdf": {"type": "pbkdf2", "iterations": 1000}, "stop_grace": "5s", "app": %s}`, r.port, app))
	out := filepath.Join(r.dir, "supervise-eif")
	if b, err := exec.Command(r.imgbuildBin, "--in", "oci:"+filepath.Join(r.dir, "oci")+":app", "--out", out, "--keep-devices",
		"--kernel", kernel, "--init", r.enclaveBin, "--enclave-config", cfg, "--bootstrap", bootPath).CombinedOutput(); err != nil {
		t.Fatalf("imgbuild: %v\n%s", err, b)
	}
	eifPath := filepath.Join(out, "enclave.eif")
	data := filepath.Join(r.dir, "data")
	toolPort := 21310

	launch := func(t *testing.T, n int) string {
		t0 := time.Now()
		p, console := startConsole(t, parentBin, "run", "--eif", eifPath, "--data-dir", data, "--run-size", "64M",
			"--listen", fmt.Sprintf("vsock://:%d", r.port), "--listen", fmt.Sprintf("tcp://127.0.0.1:%d", toolPort),
			"--debug-mode", "--stop-grace", "3s", "--stop-margin", "30s")
		m := console.waitFor(t, regexp.MustCompile(`(?m)^app-found (.*)$`), 2*time.Minute)
		console.waitFor(t, regexp.MustCompile(`(?m)^app-ready$`), time.Minute)
		t.Logf("launch %d: the application runs %v after nbd-parent run started; %s", n, time.Since(t0).Round(time.Millisecond), m[1])

		// Another peer (TCP: no vsock CID) gets neither export.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for _, export := range []string{"run", "image"} {
			c, err := nbdtest.Dial(ctx, "tcp", fmt.Sprintf("127.0.0.1:%d", toolPort), export)
			if c != nil {
				c.Close()
			}
			if !errors.Is(err, nbdclient.ErrUnknownExport) {
				t.Errorf("export %q to a TCP peer: %v, want NBD_REP_ERR_UNKNOWN", export, err)
			}
		}
		var d net.Dialer
		if conn, err := d.DialContext(ctx, "tcp", fmt.Sprintf("127.0.0.1:%d", toolPort)); err != nil {
			t.Error(err)
		} else {
			names, err := nbdtest.List(ctx, conn)
			conn.Close()
			if err != nil || len(names) != 0 {
				t.Errorf("NBD_OPT_LIST to a TCP peer: %q, %v; want none", names, err)
			}
		}

		t1 := time.Now()
		p.cmd.Process.Signal(unix.SIGTERM)
		rc := p.wait(t, 2*time.Minute)
		t.Logf("launch %d: nbd-parent run exited %d %v after SIGTERM", n, rc, time.Since(t1).Round(time.Millisecond))
		if rc != 0 {
			t.Errorf("nbd-parent run exited %d after SIGTERM, want 0 (stopped cleanly on request)", rc)
		}
		contains(t, console, "app-trapped-term")
		contains(t, p, "asking the enclave to stop", "event=stopping", "event=down", "clean=true",
			`msg="enclave ended" how=stopped exit_status=0`, "stopped cleanly; exports flushed", "export refused to a peer without a vsock CID")
		for _, l := range strings.Split(p.out.String(), "\n") {
			if strings.Contains(l, "event=") || strings.Contains(l, "enclave ended") {
				t.Logf("launch %d: %s", n, l)
			}
		}
		if strings.Contains(p.out.String(), "terminating the enclave") {
			t.Logf("launch %d: the enclave was terminated after its clean down", n)
		}
		if d := describe(t); len(d) != 0 {
			t.Errorf("describe-enclaves after nbd-parent run: %+v", d)
		}
		if t.Failed() {
			t.Logf("nbd-parent run log:\n%s\nconsole:\n%s", p.out.String(), console.out.String())
		}
		return m[1]
	}

	scenario(t, "supervise-first", func(t *testing.T) {
		if found := launch(t, 1); found != "data=none marker=none" {
			t.Errorf("first launch found %q on a new run volume", found)
		}
		if fi, err := os.Stat(filepath.Join(data, "run.img")); err != nil || fi.Size() != 64<<20 {
			t.Errorf("run image: %v, %v", fi, err)
		}
	})
	scenario(t, "supervise-second", func(t *testing.T) {
		if found := launch(t, 2); found != "data=written by launch 1 marker=stopped by SIGTERM" {
			t.Errorf("second launch found %q, want the first launch's data and SIGTERM marker", found)
		}
	})
}

// startConsole starts nbd-parent run with its log (stderr) in p and the
// enclave's console (stdout, debug mode) in console, so that console
// lines are not cut by log lines. console shares p's process.
func startConsole(t *testing.T, name string, args ...string) (p, console *proc) {
	t.Helper()
	p = &proc{cmd: exec.Command(name, args...), done: make(chan struct{})}
	console = &proc{cmd: p.cmd, done: p.done}
	p.cmd.Stdout, p.cmd.Stderr = &console.out, &p.out
	p.start(t)
	return p, console
}
