package supervisor_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/enclave-storage/enclave-storage/internal/syncbuf"
	"github.com/enclave-storage/enclave-storage/nbd"
	"github.com/enclave-storage/enclave-storage/nbd/nbdtest"
	"github.com/enclave-storage/enclave-storage/nbdclient"
	"github.com/enclave-storage/enclave-storage/nitrocli"
	"github.com/enclave-storage/enclave-storage/parentd"
	"github.com/enclave-storage/enclave-storage/supervisor"
)

const runSize = 4 << 20

// rig is one supervised run against a fake enclave.
type rig struct {
	t       *testing.T
	enc     *fakeEnclave
	peers   *peers
	sup     *supervisor.Supervisor
	logs    *syncbuf.Buffer
	console *syncbuf.Buffer
	ready   chan *parentd.Daemon
	cancel  context.CancelFunc
	done    chan struct{}
	res     supervisor.Result
	err     error
}

// newRig makes an EIF of 3 MiB and a rootfs.img next to it, and a
// supervisor of them with the data directory dataDir.
func newRig(t *testing.T, dataDir string) *rig {
	t.Helper()
	dir := t.TempDir()
	eif := filepath.Join(dir, "enclave.eif")
	if err := os.WriteFile(eif, bytes.Repeat([]byte{0xe1}, 3<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "rootfs.img"), bytes.Repeat([]byte("rootfs!\n"), 1<<14), 0o644); err != nil {
		t.Fatal(err)
	}
	r := &rig{t: t, enc: newFakeEnclave(), peers: &peers{}, logs: &syncbuf.Buffer{}, console: &syncbuf.Buffer{}, ready: make(chan *parentd.Daemon, 1)}
	r.sup = &supervisor.Supervisor{
		Config: supervisor.Config{
			EIF: eif, DataDir: dataDir, RunSize: runSize,
			StopGrace: 200 * time.Millisecond, StopMargin: 200 * time.Millisecond, PollInterval: 20 * time.Millisecond,
			Listen: []string{"vsock://:10809", "vsock://:10810"},
		},
		CLI: r.enc, Dial: r.enc.dial, Listen: r.peers.listen,
		Logger:  slog.New(slog.NewTextHandler(r.logs, nil)),
		Console: r.console,
		Ready:   func(d *parentd.Daemon) { r.ready <- d },
	}
	return r
}

// start runs the supervisor in the background.
func (r *rig) start() {
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel, r.done = cancel, make(chan struct{})
	go func() {
		defer close(r.done)
		r.res, r.err = r.sup.Run(ctx)
	}()
	r.t.Cleanup(func() { cancel(); <-r.done })
}

// running waits until the enclave was started.
func (r *rig) running() *parentd.Daemon {
	r.t.Helper()
	var d *parentd.Daemon
	select {
	case d = <-r.ready:
	case <-r.done:
		r.t.Fatalf("Run ended before serving: %v\n%s", r.err, r.logs)
	}
	for !slices.Contains(r.enc.Calls(), "dial") {
		select {
		case <-r.done:
			r.t.Fatalf("Run ended: %+v, %v\n%s", r.res, r.err, r.logs)
		case <-time.After(5 * time.Millisecond):
		}
	}
	return d
}

func (r *rig) wait() (supervisor.Result, error) {
	<-r.done
	return r.res, r.err
}

// client attaches to export as the peer of cid.
func (r *rig) client(cid uint32, export string) (*nbdtest.Client, error) {
	return nbdtest.Dial(context.Background(), "tcp", r.peers.addr(cid), export)
}

func TestAppExitsAndDataPersists(t *testing.T) {
	data := t.TempDir()
	r := newRig(t, data)
	r.sup.CPUCount, r.sup.CID = 4, 16
	r.start()
	r.running()

	// The enclave (CID 16) writes to its run volume and reads its image.
	c, err := r.client(16, "run")
	if err != nil {
		t.Fatalf("run export as CID 16: %v\n%s", err, r.logs)
	}
	payload := bytes.Repeat([]byte("persist "), 1024)
	if err := c.WriteAt(context.Background(), payload, 1<<20, nbdtest.FlagFUA); err != nil {
		t.Fatal(err)
	}
	img, err := r.client(16, "image")
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 8)
	if err := img.ReadAt(context.Background(), buf, 0); err != nil || string(buf) != "rootfs!\n" {
		t.Errorf("image export read %q, %v", buf, err)
	}
	img.Close()
	c.Close()

	r.enc.appExit(0, true)
	res, err := r.wait()
	if err != nil || res.Outcome != supervisor.Exited || res.ExitCode() != 0 || res.Terminated {
		t.Fatalf("Run = %+v, %v; want app-exited, exit 0, not terminated\n%s", res, err, r.logs)
	}
	o := r.enc.runOpts
	if want := (nitrocli.RunOptions{EIFPath: r.sup.EIF, CPUCount: 4, MemoryMiB: 12, CID: 16}); o != want {
		t.Errorf("run-enclave options %+v, want %+v (memory: 4 x the 3 MiB EIF)", o, want)
	}
	if calls := r.enc.Calls(); slices.Contains(calls, "terminate-enclave") || slices.Contains(calls, "stop") {
		t.Errorf("nitro-cli and control calls %q: nothing to stop or terminate", calls)
	}
	for _, want := range []string{"export ready", "starting the enclave", "enclave started", "control channel connected", "event=app-exited", "event=down", "stopped cleanly; exports flushed", `msg="enclave ended" how=app-exited exit_status=0`} {
		if !strings.Contains(r.logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, r.logs)
		}
	}

	// The next run reuses the run image and finds the data.
	fi, err := os.Stat(filepath.Join(data, supervisor.RunImage))
	if err != nil || fi.Size() != runSize {
		t.Fatalf("run image: %v, %v", fi, err)
	}
	r2 := newRig(t, data)
	r2.start()
	r2.running()
	c2, err := r2.client(16, "run")
	if err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(payload))
	if err := c2.ReadAt(context.Background(), got, 1<<20); err != nil || !bytes.Equal(got, payload) {
		t.Errorf("second run reads %q..., %v; want the first run's data", got[:16], err)
	}
	c2.Close()
	r2.enc.appExit(0, true)
	if res, err := r2.wait(); res.ExitCode() != 0 {
		t.Errorf("second run: %+v, %v", res, err)
	}
}

// TestSecondPeerRefused: another enclave on the parent (CID 17) does not
// see the exports, which are bound to the supervised enclave's CID.
func TestSecondPeerRefused(t *testing.T) {
	r := newRig(t, t.TempDir())
	r.start()
	r.running()
	for _, export := range []string{"run", "image"} {
		c, err := r.client(17, export)
		if c != nil {
			c.Close()
		}
		if !errors.Is(err, nbdclient.ErrUnknownExport) {
			t.Errorf("export %q as CID 17: %v, want NBD_REP_ERR_UNKNOWN", export, err)
		}
	}
	conn, err := nbdDial(r.peers.addr(17))
	if err != nil {
		t.Fatal(err)
	}
	names, err := nbdtest.List(context.Background(), conn)
	conn.Close()
	if err != nil || len(names) != 0 {
		t.Errorf("NBD_OPT_LIST as CID 17: %q, %v; want nothing", names, err)
	}
	if !strings.Contains(r.logs.String(), "export refused to peer") {
		t.Errorf("refusal not logged:\n%s", r.logs)
	}
	r.enc.appExit(0, true)
	r.wait()
}

func TestAppExitStatus(t *testing.T) {
	for _, tc := range []struct {
		status int
		clean  bool
		want   int
		out    supervisor.Outcome
	}{
		{7, true, 7, supervisor.Exited},
		{0, false, supervisor.ExitUnclean, supervisor.Unclean},
	} {
		r := newRig(t, t.TempDir())
		r.start()
		r.running()
		r.enc.appExit(tc.status, tc.clean)
		res, err := r.wait()
		if res.ExitCode() != tc.want || res.Outcome != tc.out || res.Status == nil || *res.Status != tc.status {
			t.Errorf("app exit %d clean=%v: %+v, %v; want exit status %d", tc.status, tc.clean, res, err, tc.want)
		}
	}
}

// TestStop: a stop (SIGTERM to nbd-parent) is sent over the control
// channel with the grace period; how the enclave answers decides the exit
// status and whether it is terminated.
func TestStop(t *testing.T) {
	for _, tc := range []struct {
		name       string
		mode       stopMode
		noControl  bool
		want       int
		terminated bool
		stopCalled bool
	}{
		{"clean", stopClean, false, 0, false, true},
		{"ignored", stopIgnore, false, supervisor.ExitUnclean, true, true},
		{"teardown fails", stopBroken, false, supervisor.ExitUnclean, false, true},
		{"no control channel", stopClean, true, supervisor.ExitUnclean, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, t.TempDir())
			r.enc.mode, r.enc.noControl = tc.mode, tc.noControl
			r.start()
			if tc.noControl {
				<-r.ready
				for !slices.Contains(r.enc.Calls(), "run-enclave") {
					time.Sleep(5 * time.Millisecond)
				}
			} else {
				r.running()
			}
			r.cancel()
			res, err := r.wait()
			if res.ExitCode() != tc.want || res.Terminated != tc.terminated || (tc.want == 0) != (err == nil) {
				t.Errorf("Run = %+v, %v; want exit status %d, terminated=%v\n%s", res, err, tc.want, tc.terminated, r.logs)
			}
			calls := r.enc.Calls()
			if slices.Contains(calls, "stop") != tc.stopCalled {
				t.Errorf("calls %q: stop requested = %v, want %v", calls, !tc.stopCalled, tc.stopCalled)
			}
			if tc.stopCalled && r.enc.stopGrace != r.sup.StopGrace {
				t.Errorf("stop grace %v, want %v", r.enc.stopGrace, r.sup.StopGrace)
			}
			if !strings.Contains(r.logs.String(), "stop requested") || !strings.Contains(r.logs.String(), "stopped cleanly; exports flushed") {
				t.Errorf("log:\n%s", r.logs)
			}
		})
	}
}

func TestVanished(t *testing.T) {
	r := newRig(t, t.TempDir())
	r.start()
	r.running()
	r.enc.vanish()
	res, err := r.wait()
	if res.Outcome != supervisor.Vanished || res.ExitCode() != supervisor.ExitVanished || err == nil || res.Terminated {
		t.Errorf("Run = %+v, %v; want vanished, exit status 4", res, err)
	}
}

func TestNitroCLIFails(t *testing.T) {
	data := t.TempDir()
	r := newRig(t, data)
	r.enc.runErr = &nitrocli.CommandError{Command: "run-enclave", ExitStatus: 26, Code: "E26", Message: "[ E26 ] Insufficient memory requested."}
	r.start()
	res, err := r.wait()
	var ce *nitrocli.CommandError
	if res.ExitCode() != supervisor.ExitFailed || !errors.As(err, &ce) || ce.Code != "E26" {
		t.Fatalf("Run = %+v, %v; want exit status 1 with nitro-cli's E26", res, err)
	}
	// The run image was released: the next run gets it.
	r2 := newRig(t, data)
	r2.start()
	r2.running()
	r2.enc.appExit(0, true)
	if res, err := r2.wait(); res.ExitCode() != 0 {
		t.Errorf("run after a failed one: %+v, %v", res, err)
	}
}

func TestWrongCID(t *testing.T) {
	r := newRig(t, t.TempDir())
	r.enc.reportCID = 23
	r.start()
	res, err := r.wait()
	if res.ExitCode() != supervisor.ExitFailed || err == nil || !strings.Contains(err.Error(), "CID 23, not the 16") || !res.Terminated {
		t.Errorf("Run = %+v, %v; want exit status 1, naming both CIDs, enclave terminated", res, err)
	}
}

func TestConfigErrors(t *testing.T) {
	data := t.TempDir()
	// A run image of another size is refused, not resized.
	os.WriteFile(filepath.Join(data, supervisor.RunImage), make([]byte, 1<<20), 0o600)
	r := newRig(t, data)
	r.start()
	res, err := r.wait()
	var sm *nbd.SizeMismatchError
	if res.ExitCode() != supervisor.ExitFailed || !errors.As(err, &sm) || slices.Contains(r.enc.Calls(), "run-enclave") {
		t.Errorf("run image of another size: %+v, %v; want SizeMismatchError before run-enclave", res, err)
	}

	for _, tc := range []struct {
		name string
		edit func(*supervisor.Supervisor)
		want string
	}{
		{"memory below nitro-cli's floor", func(s *supervisor.Supervisor) { s.MemoryMiB = 11 }, "at least 12 MiB"},
		{"no EIF", func(s *supervisor.Supervisor) { s.EIF = filepath.Join(t.TempDir(), "enclave.eif") }, "EIF"},
		{"no rootfs", func(s *supervisor.Supervisor) { os.Remove(filepath.Join(filepath.Dir(s.EIF), "rootfs.img")) }, "image export"},
		{"no run size", func(s *supervisor.Supervisor) { s.RunSize = 0 }, "run image size"},
		{"host CID", func(s *supervisor.Supervisor) { s.CID = 2 }, "CID 2"},
		{"parent CID", func(s *supervisor.Supervisor) { s.CID = 3 }, "CID 3"},
		{"any CID", func(s *supervisor.Supervisor) { s.CID = 0xffffffff }, "CID 4294967295"},
	} {
		r := newRig(t, t.TempDir())
		tc.edit(r.sup)
		res, err := r.sup.Run(context.Background())
		if !errors.Is(err, supervisor.ErrConfig) || !strings.Contains(err.Error(), tc.want) || res.ExitCode() != supervisor.ExitUsage {
			t.Errorf("%s: %+v, %v; want ErrConfig containing %q", tc.name, res, err, tc.want)
		}
	}
}

// TestHealthAndConsole: /healthz and the gauges follow the enclave; a
// debug-mode enclave's console reaches the Console writer.
func TestHealthAndConsole(t *testing.T) {
	r := newRig(t, t.TempDir())
	r.sup.MetricsAddr = "127.0.0.1:0"
	r.sup.Debug = true
	r.start()
	d := r.running()
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + d.MetricsAddr().String() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/healthz"); code != 200 || body != "running\n" {
		t.Errorf("/healthz = %d %q, want 200 running", code, body)
	}
	_, metrics := get("/metrics")
	for _, want := range []string{"enclave_up 1", `enclave_state{state="running"} 1`, `enclave_state{state="stopping"} 0`, "nbd_"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if !r.enc.runOpts.Debug {
		t.Error("run-enclave without --debug-mode")
	}
	for !strings.Contains(r.console.String(), "hello from the enclave") {
		select {
		case <-r.done:
			t.Fatalf("console not copied: %q", r.console.String())
		case <-time.After(5 * time.Millisecond):
		}
	}
	r.cancel()
	if res, err := r.wait(); res.ExitCode() != 0 {
		t.Errorf("Run = %+v, %v", res, err)
	}
}
