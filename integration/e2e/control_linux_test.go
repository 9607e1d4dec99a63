//go:build integration && linux

package e2e

import (
	"context"
	"errors"
	"io"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/mdlayher/vsock"

	"github.com/enclave-storage/enclave-storage/control"
)

// termApp loops writing to the run volume until SIGTERM, which it traps:
// it writes and fsyncs a marker, then exits 0.
const termApp = `trap 'echo "stopped by SIGTERM" > /term-marker; sync; echo trapped; exit 0' TERM
echo app-started
i=0
while true; do
	i=$((i+1))
	dd if=/dev/zero of=/loop.$((i % 4)) bs=64k count=4 conv=fsync 2> /dev/null || echo "write $i failed"
	sleep 0.1
done
`

// termMarkerApp checks the marker the trap wrote on the previous launch.
const termMarkerApp = `set -e
echo app-started
test "$(cat /term-marker)" = "stopped by SIGTERM"
echo term-marker-intact
`

// dialControl connects to nbd-enclave's control listener over the vsock
// loopback, retrying while it is not listening yet.
func dialControl(t *testing.T, ctx context.Context) *control.Client {
	t.Helper()
	for {
		c, err := vsock.Dial(vsock.Local, control.DefaultPort, nil)
		if err == nil {
			return control.NewClient(c)
		}
		select {
		case <-ctx.Done():
			t.Fatalf("control listener on CID 1 port %d: %v", control.DefaultPort, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// events reads events until down (or the end) and returns their names
// and the down event.
func events(t *testing.T, ctx context.Context, c *control.Client) (names []string, exited, down *control.Event) {
	t.Helper()
	for {
		ev, err := c.Next(ctx)
		if errors.Is(err, io.EOF) {
			return names, exited, down
		}
		if err != nil {
			t.Fatalf("control events %v: %v", names, err)
		}
		names = append(names, ev.Event)
		switch ev.Event {
		case control.EventAppExited:
			exited = &ev
		case control.EventDown:
			down = &ev
		}
	}
}

// TestControlStop (issue 13): a stop over the control channel, as
// nbd-parent run sends it on SIGTERM, reaches the application as SIGTERM;
// the agent tears down and reports every step in order; the data the
// application wrote on SIGTERM is there on the next launch. A stop sent
// before the application starts cancels the launch cleanly.
func TestControlStop(t *testing.T) {
	r := newRig(t)
	r.port = 21100
	// A cheap keyslot KDF: argon2id's 64 MiB cost minutes per launch
	// under TCG, and the KDF is not what this test is about.
	conf := filepath.Join(r.dir, "control.json")
	write(t, conf, `{"luks_kdf": {"type": "pbkdf2", "iterations": 1000}}`)
	cheap := launch{flags: []string{"--config", conf}}
	p := r.parent(t, r.img)
	defer p.stop(t)

	scenario(t, "control-stop-before-app", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		e, _ := r.enclave(t, cheap, termApp)
		c := dialControl(t, ctx)
		defer c.Close()
		if err := c.Stop(ctx, 0); err != nil {
			t.Fatal(err)
		}
		names, exited, down := events(t, ctx, c)
		t.Logf("events: %v", names)
		if rc := e.wait(t, time.Minute); rc != 0 {
			t.Fatalf("nbd-enclave exited %d:\n%s", rc, e.out.String())
		}
		if exited != nil || down == nil || *down.Status != 0 || !down.Clean {
			t.Fatalf("events %v, down %+v: want hello, stopping, down status 0 clean:\n%s", names, down, e.out.String())
		}
		if appStarted.MatchString(e.out.String()) {
			t.Errorf("the application ran:\n%s", e.out.String())
		}
		contains(t, e, "launch cancelled by a stop request")
	})

	scenario(t, "control-stop", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		e, _ := r.enclave(t, cheap, termApp)
		e.waitFor(t, appStarted, 4*time.Minute)
		time.Sleep(500 * time.Millisecond) // a few writes
		c := dialControl(t, ctx)
		defer c.Close()
		t0 := time.Now()
		if err := c.Stop(ctx, 3*time.Second); err != nil {
			t.Fatal(err)
		}
		names, exited, down := events(t, ctx, c)
		t.Logf("events: %v, stop to down %v", names, time.Since(t0).Round(time.Millisecond))
		want := []string{control.EventHello, control.EventStopping, control.EventAppExited, control.EventDown}
		if len(names) != len(want) {
			t.Fatalf("events %v, want %v:\n%s", names, want, e.out.String())
		}
		for i := range want {
			if names[i] != want[i] {
				t.Fatalf("events %v, want %v", names, want)
			}
		}
		if *exited.Status != 0 || *down.Status != 0 || !down.Clean || down.Error != "" {
			t.Errorf("app-exited %+v, down %+v", *exited, *down)
		}
		if rc := e.wait(t, time.Minute); rc != 0 {
			t.Fatalf("nbd-enclave exited %d:\n%s", rc, e.out.String())
		}
		contains(t, e, "trapped", "stop requested by the parent", "grace=3s")
		e.waitFor(t, regexp.MustCompile(`msg="application exited" status=0 stopping=true`), time.Second)

		e, _ = r.enclave(t, cheap, termMarkerApp)
		if rc := e.wait(t, 4*time.Minute); rc != 0 {
			t.Fatalf("second launch exited %d:\n%s", rc, e.out.String())
		}
		contains(t, e, "term-marker-intact")
	})
}
