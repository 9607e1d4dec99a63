//go:build linux

package enclave

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/enclave-storage/enclave-storage/control"
)

func TestStopGrace(t *testing.T) {
	cfg := Config{StopGrace: Duration(10 * time.Second)}
	for _, tc := range []struct {
		name  string
		cause error
		want  time.Duration
	}{
		{"SIGTERM", context.Canceled, 10 * time.Second},
		{"stop, enclave's grace", &StopRequest{}, 10 * time.Second},
		{"stop, shorter grace", &StopRequest{Grace: 2 * time.Second, GraceSet: true}, 2 * time.Second},
		{"stop, zero grace", &StopRequest{Grace: 0, GraceSet: true}, 0},
		{"stop, longer grace is not granted", &StopRequest{Grace: time.Hour, GraceSet: true}, 10 * time.Second},
	} {
		ctx, cancel := context.WithCancelCause(context.Background())
		cancel(tc.cause)
		if got := stopGrace(ctx, cfg); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestExitStatus(t *testing.T) {
	app := &ExitError{Code: 3}
	for _, tc := range []struct {
		err    error
		status int
		clean  bool
	}{
		{nil, 0, true},
		{app, 3, true},
		{fmt.Errorf("wrapped: %w", app), 3, false},
		{errors.Join(app, errors.New("umount: busy")), 3, false},
		{errors.New("attach: refused"), 1, false},
	} {
		s, c := ExitStatus(tc.err)
		if s != tc.status || c != tc.clean {
			t.Errorf("%v: %d %v, want %d %v", tc.err, s, c, tc.status, tc.clean)
		}
	}
}

// TestControl drives the agent's control listener on a unix socket as
// nbd-enclave wires it: stop → cancelled context with the grace → the
// application's status → down, in order.
func TestControl(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "control.sock")
	cfg := Config{Parent: "unix:///nbd.sock", Control: "unix://" + sock, StopGrace: Duration(10 * time.Second)}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ctl, err := StartControl(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	c := control.NewClient(conn)
	defer c.Close()
	next := func(want string) control.Event {
		t.Helper()
		ev, err := c.Next(ctx)
		if err != nil || ev.Event != want {
			t.Fatalf("got %+v, %v; want %s", ev, err, want)
		}
		return ev
	}
	next(control.EventHello)
	sctx, stop := ctl.Watch(ctx)
	defer stop()
	if err := c.Stop(ctx, 1500*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	<-sctx.Done()
	if !errors.Is(context.Cause(sctx), ErrStopRequested) || stopGrace(sctx, cfg.Defaults()) != 1500*time.Millisecond {
		t.Fatalf("cause %v, grace %v", context.Cause(sctx), stopGrace(sctx, cfg.Defaults()))
	}
	next(control.EventStopping)
	ctl.AppExited(143)
	if ev := next(control.EventAppExited); *ev.Status != 143 {
		t.Errorf("app-exited %+v", ev)
	}
	ctl.Down(0, nil)
	if ev := next(control.EventDown); *ev.Status != 0 || !ev.Clean || ev.Error != "" {
		t.Errorf("down %+v", ev)
	}
	if ev, err := c.Next(ctx); !errors.Is(err, io.EOF) {
		t.Fatalf("after down: %+v, %v", ev, err)
	}
}

func TestControlOff(t *testing.T) {
	ctl, err := StartControl(context.Background(), Config{Control: ControlOff}, slog.New(slog.DiscardHandler))
	if ctl != nil || err != nil {
		t.Fatalf("%v, %v", ctl, err)
	}
	// A nil Control does nothing, and Watch still cancels with its parent.
	ctl.AppExited(0)
	ctl.Down(1, errors.New("x"))
	ctx, cancel := context.WithCancel(context.Background())
	sctx, stop := ctl.Watch(ctx)
	defer stop()
	cancel()
	<-sctx.Done()
}
