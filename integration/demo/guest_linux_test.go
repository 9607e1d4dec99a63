//go:build integration && linux

package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/enclave-storage/enclave-storage/internal/syncbuf"
	"github.com/enclave-storage/enclave-storage/nbdclient"
	"github.com/mdlayher/vsock"
)

var demoDir = flag.String("demo.dir", "", "the demo's work directory in the VM (set by go run ./integration/demo)")

// shown are the log lines of nbd-parent run and of the enclave's console
// the demo prints, besides the application's own.
var shown = regexp.MustCompile(`msg="(enclave started|heartbeat acknowledged|run volume formatted|run volume mounted|stop requested|stop requested by the parent|application exited|teardown step done|enclave event|enclave terminated|enclave ended)"`)

// TestGuest is the demo's guest half (see main.go): it installs the image
// unpacked by umoci as a container runtime would and runs its entrypoint.
func TestGuest(t *testing.T) {
	if *demoDir == "" {
		t.Skip("run by make demo (go run ./integration/demo)")
	}
	bundle := filepath.Join(*demoDir, "bundle")
	args, env, err := readBundle(bundle)
	if err != nil {
		t.Fatal(err)
	}
	if err := install(filepath.Join(bundle, "rootfs"), "/"); err != nil {
		t.Fatal(err)
	}
	// -v data:/var/lib/enclave
	if err := os.MkdirAll("/var/lib/enclave", 0o755); err != nil {
		t.Fatal(err)
	}
	say("image installed; the volume is /var/lib/enclave; entrypoint %s", strings.Join(args, " "))

	for launch := 1; launch <= 2; launch++ {
		say("")
		say("launch %d: docker run --device /dev/nitro_enclaves -v data:/var/lib/enclave IMAGE --debug-mode", launch)
		code := runOnce(t, args, env, launch)
		say("nbd-parent run exited with status %d", code)
		if code != 0 {
			t.Fatalf("launch %d: nbd-parent run exited %d, want 0", launch, code)
		}
	}
	say("")
	refusePeer(t, args[0])
}

// runOnce runs the entrypoint with --debug-mode until the application
// says it runs, then sends SIGTERM as docker stop does; it returns the exit
// status.
func runOnce(t *testing.T, args, env []string, launch int) int {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, args[0], append(args[1:], "--debug-mode")...)
	cmd.Env = env
	cmd.Dir = "/"
	cmd.WaitDelay = 5 * time.Second
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	running := make(chan struct{})
	var once sync.Once
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			l := sc.Text()
			fmt.Println(l) // the whole output, for go run ./integration/demo -v
			switch {
			case strings.Contains(l, "DEMO-APP"):
				_, after, _ := strings.Cut(l, "DEMO-APP ")
				say("  app: %s", after)
				if strings.Contains(l, "running until stopped") {
					once.Do(func() { close(running) })
				}
			case shown.MatchString(l):
				say("  %s", brief(l))
			case strings.Contains(l, "level=ERROR"):
				say("  %s", l)
			}
		}
		io.Copy(io.Discard, pr)
	}()
	select {
	case <-running:
		say("the application is running: SIGTERM to nbd-parent (docker stop)")
		cmd.Process.Signal(syscall.SIGTERM)
	case <-ctx.Done():
		t.Errorf("launch %d: the application did not start", launch)
	}
	err := cmd.Wait()
	pw.Close()
	wg.Wait()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.ExitCode()
	default:
		t.Fatalf("launch %d: %v", launch, err)
		return -1
	}
}

// refusePeer shows an export bound to one enclave's CID refused to any
// other vsock peer: in the VM every peer is the loopback CID 1.
func refusePeer(t *testing.T, nbdParent string) {
	say("a foreign peer: nbd-parent serves the run image to CID 16 only; CID 1 asks for it")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, nbdParent, "--listen", "vsock://:10811",
		"--export", "run=/var/lib/enclave/run.img,cid=16")
	out := &syncbuf.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	}()
	var conn *vsock.Conn
	var err error
	for i := 0; i < 100; i++ {
		if conn, err = vsock.Dial(vsock.Local, 10811, nil); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, err = nbdclient.Handshake(ctx, conn, "run")
	if !errors.Is(err, nbdclient.ErrUnknownExport) {
		t.Fatalf("CID 1 asking for an export bound to CID 16: %v, want unknown export", err)
	}
	say("  the peer is told: %v", err)
	time.Sleep(200 * time.Millisecond)
	for _, l := range strings.Split(out.String(), "\n") {
		if strings.Contains(l, "refused") {
			say("  nbd-parent logs: %s", brief(l))
		}
	}
}

// readBundle returns the process's arguments and environment from umoci's
// runtime config.
func readBundle(dir string) (args, env []string, err error) {
	b, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		return nil, nil, err
	}
	var rt struct {
		Process struct {
			Args []string `json:"args"`
			Env  []string `json:"env"`
		} `json:"process"`
	}
	if err := json.Unmarshal(b, &rt); err != nil {
		return nil, nil, fmt.Errorf("%s/config.json: %w", dir, err)
	}
	if len(rt.Process.Args) == 0 {
		return nil, nil, fmt.Errorf("%s/config.json: no process args", dir)
	}
	env = rt.Process.Env
	if !hasPath(env) {
		env = append(env, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
	}
	return rt.Process.Args, env, nil
}

func hasPath(env []string) bool {
	for _, e := range env {
		if strings.HasPrefix(e, "PATH=") {
			return true
		}
	}
	return false
}

// install copies the unpacked image's files onto the VM's root.
func install(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		to := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return os.MkdirAll(to, 0o755)
		case d.Type().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			return os.WriteFile(to, b, info.Mode().Perm())
		}
		return nil
	})
}

// slogTime is slog's leading time= field, which brief drops.
var slogTime = regexp.MustCompile(`^time=\S+ `)

func brief(l string) string { return slogTime.ReplaceAllString(l, "") }

func say(format string, a ...any) {
	fmt.Printf("DEMO| %s\n", fmt.Sprintf(format, a...))
}
