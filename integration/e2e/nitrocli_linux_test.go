//go:build integration && linux

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mdlayher/vsock"

	"github.com/enclave-storage/enclave-storage/eif"
	"github.com/enclave-storage/enclave-storage/integration/itest"
)

// nitroApp is the EIF's application: it prints a line for the console,
// writes to the run volume until SIGTERM, and says it got it.
const nitroApp = `trap 'echo nitro-app-trapped-term; exit 0' TERM
echo nitro-app-started
while true; do echo tick >> /ticks; sync; sleep 0.2; done
`

// nitroRun is nitro-cli run-enclave's JSON answer.
type nitroRun struct {
	EnclaveName  string
	EnclaveID    string
	ProcessID    int
	EnclaveCID   uint64
	NumberOfCPUs int
	CPUIDs       []uint32
	MemoryMiB    uint64
}

// nitroDescribe is one element of describe-enclaves' answer.
type nitroDescribe struct {
	nitroRun
	State        string
	Flags        string
	Measurements eif.PCRs
}

// nitro runs nitro-cli and returns its stdout; it fails the test unless
// the exit status is want.
func nitro(t *testing.T, want int, args ...string) (stdout, stderr string) {
	t.Helper()
	cmd := exec.Command("nitro-cli", args...)
	var o, e strings.Builder
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	rc := 0
	if ee, ok := err.(*exec.ExitError); ok {
		rc = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("nitro-cli %s: %v", strings.Join(args, " "), err)
	}
	if rc != want {
		t.Fatalf("nitro-cli %s: exit %d, want %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), rc, want, o.String(), e.String())
	}
	return o.String(), e.String()
}

func describe(t *testing.T) []nitroDescribe {
	t.Helper()
	out, _ := nitro(t, 0, "describe-enclaves")
	var d []nitroDescribe
	if err := json.Unmarshal([]byte(out), &d); err != nil {
		t.Fatalf("describe-enclaves: %v\n%s", err, out)
	}
	return d
}

// awaitGone waits until describe-enclaves no longer lists id.
func awaitGone(t *testing.T, id string) {
	t.Helper()
	for i := 0; ; i++ {
		found := false
		for _, d := range describe(t) {
			found = found || d.EnclaveID == id
		}
		if !found {
			return
		}
		if i == 600 {
			t.Fatalf("enclave %s still in describe-enclaves", id)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestNitroCLI (issue 13): the fake nitro-cli runs an EIF that imgbuild
// built with nbd-enclave as /init: run-enclave's JSON, describe-enclaves,
// the application's output on the console, a clean stop over the control
// channel that ends the enclave; then an enclave without --debug-mode,
// whose console is refused, ended by terminate-enclave.
func TestNitroCLI(t *testing.T) {
	_, err := exec.LookPath("nitro-cli")
	itest.Need(t, "nitro-cli (the harness installs integration/fake-nitro-cli as nitro-cli)", err)
	kernel := filepath.Join(itest.OutDir(), KernelFile)
	_, err = os.Stat(kernel)
	itest.Need(t, "the VM's kernel in the artifact directory", err)
	r := newRig(t)
	r.port = 21200
	t.Setenv("NITRO_CLI_STATE", filepath.Join(r.dir, "nitro-state"))

	// The EIF: loopback addresses, an ephemeral volume with a cheap KDF.
	app, _ := json.Marshal(map[string]any{"entrypoint": []string{"/bin/sh", "-c"}, "cmd": []string{nitroApp}, "env": []string{"PATH=/bin"}})
	cfg := filepath.Join(r.dir, "enclave.json")
	write(t, cfg, fmt.Sprintf(`{"parent": "vsock://1:%d", "heartbeat": "vsock://1:9000", "key": "random:", "ephemeral": true,
		"luks_kdf": {"type": "pbkdf2", "iterations": 1000}, "stop_grace": "5s", "app": %s}`, r.port, app))
	out := filepath.Join(r.dir, "eif")
	t0 := time.Now()
	if b, err := exec.Command(r.imgbuildBin, "--in", "oci:"+filepath.Join(r.dir, "oci")+":app", "--out", out, "--keep-devices",
		"--kernel", kernel, "--init", r.enclaveBin, "--enclave-config", cfg).CombinedOutput(); err != nil {
		t.Fatalf("imgbuild: %v\n%s", err, b)
	}
	eifPath := filepath.Join(out, "enclave.eif")
	fi, err := os.Stat(eifPath)
	if err != nil {
		t.Fatal(err)
	}
	var pcrs eif.Measurements
	if b, err := os.ReadFile(filepath.Join(out, "pcrs.json")); err != nil || json.Unmarshal(b, &pcrs) != nil {
		t.Fatalf("pcrs.json: %v", err)
	}
	mem := fmt.Sprint((fi.Size()>>20+1)*4 + 64)
	t.Logf("imgbuild built %s (%d bytes) in %v", eifPath, fi.Size(), time.Since(t0).Round(time.Millisecond))

	p := r.parent(t, filepath.Join(out, "rootfs.img"))

	scenario(t, "nitro-cli-memory-refused", func(t *testing.T) {
		_, stderr := nitro(t, 26, "run-enclave", "--eif-path", eifPath, "--cpu-count", "2", "--memory", "1")
		if !strings.Contains(stderr, "[ E26 ] Insufficient memory requested") {
			t.Errorf("stderr: %s", stderr)
		}
	})

	scenario(t, "nitro-cli-run-stop", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		t0 := time.Now()
		stdout, stderr := nitro(t, 0, "run-enclave", "--eif-path", eifPath, "--cpu-count", "2", "--memory", mem, "--debug-mode", "--enclave-cid", "16")
		t.Logf("run-enclave answered in %v:\n%s", time.Since(t0).Round(time.Millisecond), stdout)
		if want := "Started enclave with enclave-cid: 1, memory: " + mem + " MiB, cpu-ids: [1, 2]"; !strings.Contains(stderr, want) {
			t.Errorf("run-enclave's stderr lacks %q:\n%s", want, stderr)
		}
		var run nitroRun
		if err := json.Unmarshal([]byte(stdout), &run); err != nil {
			t.Fatal(err)
		}
		if run.EnclaveCID != 1 || run.EnclaveName != "enclave" || !strings.HasPrefix(run.EnclaveID, "i-0000000000000000-enc") ||
			run.NumberOfCPUs != 2 || len(run.CPUIDs) != 2 || fmt.Sprint(run.MemoryMiB) != mem || run.ProcessID <= 0 {
			t.Errorf("run-enclave: %+v", run)
		}
		d := describe(t)
		if len(d) != 1 || d[0].EnclaveID != run.EnclaveID || d[0].State != "RUNNING" || d[0].Flags != "DEBUG_MODE" ||
			d[0].EnclaveCID != 1 || d[0].Measurements.PCR0.String() != pcrs.Measurements.PCR0.String() {
			t.Errorf("describe-enclaves: %+v, want %s RUNNING DEBUG_MODE with PCR0 %s", d, run.EnclaveID, pcrs.Measurements.PCR0)
		}
		con := start(t, "nitro-cli", "console", "--enclave-id", run.EnclaveID)
		con.waitFor(t, regexp.MustCompile(`(?m)^nitro-app-started`), 4*time.Minute)
		time.Sleep(time.Second) // a few ticks

		c := dialControl(t, ctx)
		defer c.Close()
		if err := c.Stop(ctx, 2*time.Second); err != nil {
			t.Fatal(err)
		}
		names, exited, down := events(t, ctx, c)
		t.Logf("control events: %v", names)
		if strings.Join(names, ",") != "hello,stopping,app-exited,down" || *exited.Status != 0 || *down.Status != 0 || !down.Clean {
			t.Errorf("events %v, app-exited %+v, down %+v", names, exited, down)
		}
		if rc := con.wait(t, time.Minute); rc != 0 {
			t.Errorf("console exited %d", rc)
		}
		awaitGone(t, run.EnclaveID)
		contains(t, con, "Successfully connected to the console.", "heartbeat acknowledged", "nitro-app-trapped-term",
			"rebooting to end the enclave")
		t.Logf("console:\n%s", con.out.String())
	})

	scenario(t, "nitro-cli-terminate", func(t *testing.T) {
		// In nbd-parent's place a listener that accepts and says nothing:
		// the enclave waits in the NBD handshake, so the SIGKILL leaves no
		// NBD or device-mapper devices behind in the VM.
		p.stop(t)
		l, err := vsock.Listen(r.port, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		accepted := make(chan net.Conn, 4)
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				accepted <- c
			}
		}()
		defer func() {
			for len(accepted) > 0 {
				(<-accepted).Close()
			}
		}()
		stdout, _ := nitro(t, 0, "run-enclave", "--eif-path", eifPath, "--cpu-count", "1", "--memory", mem, "--enclave-name", "second")
		var run nitroRun
		if err := json.Unmarshal([]byte(stdout), &run); err != nil {
			t.Fatal(err)
		}
		d := describe(t)
		if len(d) != 1 || d[0].EnclaveName != "second" || d[0].Flags != "NONE" || d[0].State != "RUNNING" {
			t.Errorf("describe-enclaves: %+v", d)
		}
		_, stderr := nitro(t, 44, "console", "--enclave-id", run.EnclaveID)
		if !strings.Contains(stderr, "[ E44 ]") || !strings.Contains(stderr, "--debug-mode") {
			t.Errorf("console of a non-debug enclave: %s", stderr)
		}
		select {
		case c := <-accepted:
			accepted <- c
		case <-time.After(2 * time.Minute):
			t.Fatal("the enclave did not dial its parent")
		}
		if d := describe(t); len(d) != 1 {
			t.Fatalf("describe-enclaves while the enclave waits for its parent: %+v", d)
		}
		stdout, _ = nitro(t, 0, "terminate-enclave", "--enclave-id", run.EnclaveID)
		var term struct {
			EnclaveName, EnclaveID string
			Terminated             bool
		}
		if err := json.Unmarshal([]byte(stdout), &term); err != nil || !term.Terminated || term.EnclaveID != run.EnclaveID || term.EnclaveName != "second" {
			t.Errorf("terminate-enclave: %s (%v)", stdout, err)
		}
		awaitGone(t, run.EnclaveID)
		if d := describe(t); len(d) != 0 {
			t.Errorf("describe-enclaves after terminate: %+v", d)
		}
	})
}
