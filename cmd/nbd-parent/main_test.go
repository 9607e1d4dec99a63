package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/enclave-storage/enclave-storage/internal/syncbuf"
	"github.com/enclave-storage/enclave-storage/nbd/nbdtest"
	"github.com/enclave-storage/enclave-storage/nbdclient"
	"github.com/mdlayher/vsock"
)

func TestHelp(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"--help"}, &out, &errb); code != 0 {
		t.Fatalf("--help exited %d", code)
	}
	for _, want := range []string{"--listen vsock://:10809", "--export image=", "--metrics-addr", `"exports"`, "--forward vsock://:8000=kms.us-east-1.amazonaws.com:443", "--credentials 'vsock://:8001?cid=16'", "never tcp", "cid=16", `"cids": [16]`} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("--help output lacks %q", want)
		}
	}
}

func TestUsageErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no exports", []string{"--listen", "tcp://127.0.0.1:0"}, "no exports"},
		{"no listen", []string{"--export", "a=" + filepath.Join(dir, "a") + ",size=1M"}, "no listen"},
		{"bad export", []string{"--export", "oops"}, "NAME=PATH"},
		{"bad listen", []string{"--listen", "udp://:1", "--export", "a=/a"}, "scheme"},
		{"bad default", []string{"--listen", "tcp://127.0.0.1:0", "--export", "a=/a", "--default", "b"}, "default export"},
		{"bad forward", []string{"--listen", "tcp://127.0.0.1:0", "--export", "a=/a", "--forward", "vsock://:8000=kms"}, "HOST:PORT"},
		{"bad credentials", []string{"--listen", "tcp://127.0.0.1:0", "--export", "a=/a", "--credentials", "8001"}, "scheme"},
		{"bad cid", []string{"--listen", "vsock://:10809", "--export", "a=/a,cid=sixteen"}, "vsock context ID"},
		{"cid without vsock", []string{"--listen", "tcp://127.0.0.1:0", "--export", "a=/a,cid=16"}, "no vsock listener"},
		{"stray argument", []string{"serve"}, "unexpected arguments"},
		{"missing config", []string{"--config", filepath.Join(dir, "nope.json")}, "no such file"},
	}
	for _, tt := range tests {
		var out, errb bytes.Buffer
		if code := run(context.Background(), tt.args, &out, &errb); code != 2 {
			t.Errorf("%s: exit %d, want 2", tt.name, code)
		}
		if !strings.Contains(errb.String(), tt.want) {
			t.Errorf("%s: stderr lacks %q:\n%s", tt.name, tt.want, errb.String())
		}
	}
}

// The daemon tests run the real binary, built once.
var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

func binary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "nbd-parent-test")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "nbd-parent")
		// The go command that runs this test is first on PATH under go test.
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// daemon is a running nbd-parent.
type daemon struct {
	cmd  *exec.Cmd
	sock string
	logs *syncbuf.Buffer
	done chan error
}

// start runs the daemon on a unix socket in dir and waits until it
// accepts connections.
func start(t *testing.T, dir string, args ...string) *daemon {
	t.Helper()
	d := &daemon{sock: filepath.Join(dir, "nbd.sock"), logs: &syncbuf.Buffer{}, done: make(chan error, 1)}
	d.cmd = exec.Command(binary(t), append([]string{"--listen", "unix://" + d.sock}, args...)...)
	d.cmd.Stderr = d.logs
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.done <- d.cmd.Wait() }()
	t.Cleanup(func() {
		d.cmd.Process.Kill()
		<-d.done
		if t.Failed() {
			t.Logf("nbd-parent log:\n%s", d.logs)
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.Dial("unix", d.sock)
		if err == nil {
			c.Close()
			return d
		}
		select {
		case err := <-d.done:
			d.done <- err
			t.Fatalf("nbd-parent exited before listening (%v):\n%s", err, d.logs)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("nbd-parent not listening after 20s:\n%s", d.logs)
		}
	}
}

func (d *daemon) client(t *testing.T, export string) *nbdtest.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := nbdtest.Dial(ctx, "unix", d.sock, export)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// wait returns the daemon's exit status, failing after 20s.
func (d *daemon) wait(t *testing.T) error {
	t.Helper()
	select {
	case err := <-d.done:
		d.done <- err
		return err
	case <-time.After(20 * time.Second):
		t.Fatal("nbd-parent did not exit")
		return nil
	}
}

func random(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// TestKillAfterFlush: data acknowledged by FLUSH, or written with FUA,
// survives SIGKILL of the daemon.
func TestKillAfterFlush(t *testing.T) {
	dir := t.TempDir()
	img := filepath.Join(dir, "run.img")
	d := start(t, dir, "--export", "run="+img+",size=16M")
	c := d.client(t, "run")
	ctx := context.Background()
	a, b := random(1<<20), random(64<<10)
	if err := c.WriteAt(ctx, a, 3<<20, 0); err != nil {
		t.Fatal(err)
	}
	if err := c.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.WriteAt(ctx, b, 10<<20, nbdtest.FlagFUA); err != nil {
		t.Fatal(err)
	}
	d.cmd.Process.Signal(syscall.SIGKILL)
	d.wait(t)
	got, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 16<<20 || !bytes.Equal(got[3<<20:4<<20], a) || !bytes.Equal(got[10<<20:10<<20+len(b)], b) {
		t.Fatal("flushed data missing from the image after SIGKILL")
	}

	// Restarting serves the same file, unchanged, not recreated.
	d2 := start(t, dir, "--export", "run="+img+",size=16M")
	c2 := d2.client(t, "run")
	buf := make([]byte, len(a))
	if err := c2.ReadAt(ctx, buf, 3<<20); err != nil || !bytes.Equal(buf, a) {
		t.Fatalf("data not served after restart: %v", err)
	}
	c2.Close()
}

// TestSIGTERM: the daemon flushes, exits 0 and the unflushed write is in
// the file; a second daemon on the same file is refused meanwhile.
func TestSIGTERM(t *testing.T) {
	dir := t.TempDir()
	img := filepath.Join(dir, "run.img")
	ro := filepath.Join(dir, "image.img")
	os.WriteFile(ro, random(1<<20), 0o600)
	d := start(t, dir, "--export", "run="+img+",size=16M", "--export", "image="+ro+",ro", "--default", "image")

	// The images are locked: a second daemon fails with a clear message.
	dir2 := t.TempDir()
	second := exec.Command(binary(t), "--listen", "unix://"+filepath.Join(dir2, "s"), "--export", "run="+img+",size=16M")
	out, err := second.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(string(out), "locked by another process") {
		t.Fatalf("second daemon on the same image: %v\n%s", err, out)
	}

	c := d.client(t, "run")
	data := random(256 << 10)
	if err := c.WriteAt(context.Background(), data, 1<<20, 0); err != nil {
		t.Fatal(err)
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	if err := d.wait(t); err != nil {
		t.Fatalf("exit after SIGTERM: %v", err)
	}
	if !strings.Contains(d.logs.String(), "stopped cleanly") {
		t.Errorf("no clean-stop log line:\n%s", d.logs)
	}
	// The client sees its connection closed.
	if err := c.ReadAt(context.Background(), make([]byte, 512), 0); err == nil {
		t.Error("connection still served after shutdown")
	}
	got, _ := os.ReadFile(img)
	if !bytes.Equal(got[1<<20:1<<20+len(data)], data) {
		t.Fatal("write missing from the image after SIGTERM")
	}
	if _, err := os.Stat(d.sock); !os.IsNotExist(err) {
		t.Errorf("unix socket left behind: %v", err)
	}
}

func TestConfigFileAndMetrics(t *testing.T) {
	dir := t.TempDir()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	metricsAddr := l.Addr().String()
	l.Close()
	cfg := fmt.Sprintf(`{
		"metrics_addr": %q,
		"exports": [{"name": "run", "path": %q, "size": "4M", "description": "scratch"}]
	}`, metricsAddr, filepath.Join(dir, "run.img"))
	cfgPath := filepath.Join(dir, "nbd.json")
	os.WriteFile(cfgPath, []byte(cfg), 0o600)
	d := start(t, dir, "--config", cfgPath)

	conn, err := net.Dial("unix", d.sock)
	if err != nil {
		t.Fatal(err)
	}
	names, err := nbdtest.List(context.Background(), conn)
	conn.Close()
	if err != nil || len(names) != 1 || names[0] != "run" {
		t.Fatalf("list: %v, %v", names, err)
	}
	c := d.client(t, "run")
	ctx := context.Background()
	c.WriteAt(ctx, random(8192), 0, 0)
	c.ReadAt(ctx, make([]byte, 4096), 0)
	c.ReadAt(ctx, make([]byte, 4096), 1<<30) // past the end: an error

	resp, err := http.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`nbd_requests_total{export="run",op="read"} 2`,
		`nbd_request_errors_total{export="run",op="read"} 1`,
		`nbd_written_bytes_total{export="run"} 8192`,
		`nbd_read_bytes_total{export="run"} 4096`,
		`nbd_connections{export="run"} 1`,
		`nbd_peer_refused_total{export="run"} 0`,
		`nbd_request_duration_seconds_bucket{export="run",op="write",le=`,
		`go_goroutines`,
	} {
		if !bytes.Contains(body, []byte(want)) {
			t.Errorf("metrics lack %q", want)
		}
	}
	c.Close()
}

// TestPeerCIDFlag: an export given with cid=N is refused to a peer
// without that CID (here a unix socket peer, which has none) and left out
// of its list, while an unbound export is served.
func TestPeerCIDFlag(t *testing.T) {
	if l, err := vsock.Listen(0, nil); err != nil {
		t.Skipf("no AF_VSOCK here (a cid=N export needs a vsock listener): %v", err)
	} else {
		l.Close()
	}
	dir := t.TempDir()
	d := start(t, dir, "--listen", "vsock://:0",
		"--export", "run="+filepath.Join(dir, "run.img")+",size=1M,cid=16,cid=17",
		"--export", "open="+filepath.Join(dir, "open.img")+",size=1M")
	conn, err := net.Dial("unix", d.sock)
	if err != nil {
		t.Fatal(err)
	}
	names, err := nbdtest.List(context.Background(), conn)
	conn.Close()
	if err != nil || !slices.Equal(names, []string{"open"}) {
		t.Errorf("list over unix: %q, %v; want [open]", names, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := nbdtest.Dial(ctx, "unix", d.sock, "run"); !errors.Is(err, nbdclient.ErrUnknownExport) {
		t.Errorf("run over unix: %v, want the reply to an unknown export", err)
	}
	d.client(t, "open").Close()
	for _, want := range []string{`msg="export ready" export=run`, "cids=\"[16 17]\"", `msg="export refused to a peer without a vsock CID" export=run`} {
		if !strings.Contains(d.logs.String(), want) {
			t.Errorf("log lacks %s", want)
		}
	}
}
