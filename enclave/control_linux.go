//go:build linux

package enclave

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/enclave-storage/enclave-storage/control"
	"github.com/enclave-storage/enclave-storage/nbd/nbdconfig"
)

// ErrStopRequested is the cause (context.Cause) of a context cancelled
// by the parent's stop request; errors.As finds the *StopRequest.
var ErrStopRequested = errors.New("enclave: stop requested by the parent")

// StopRequest is a parent's stop, as the cause of the cancelled context.
type StopRequest struct {
	// Grace is the parent's grace period when GraceSet; the agent uses
	// the smaller of it and Config.StopGrace.
	Grace    time.Duration
	GraceSet bool
}

func (r *StopRequest) Error() string { return ErrStopRequested.Error() }

// Is makes errors.Is(err, ErrStopRequested) true.
func (r *StopRequest) Is(target error) bool { return target == ErrStopRequested }

// stopGrace is the time between SIGTERM and SIGKILL for a stop caused by
// ctx: Config.StopGrace, shortened (never lengthened) by the parent's
// request.
func stopGrace(ctx context.Context, cfg Config) time.Duration {
	g := time.Duration(cfg.StopGrace)
	var r *StopRequest
	if errors.As(context.Cause(ctx), &r) && r.GraceSet && r.Grace < g {
		g = r.Grace
	}
	return g
}

// controlFlushTimeout bounds how long the last events wait for a slow
// parent before the enclave ends.
const controlFlushTimeout = 5 * time.Second

// Control is the agent's control listener (package control): the
// parent's way to stop the application cleanly, and the agent's way to
// tell it how the enclave ended. The methods of a nil *Control (control
// off) do nothing.
type Control struct {
	srv  *control.Server
	log  *slog.Logger
	done chan struct{}
}

// StartControl listens on cfg.Control (nil, nil when it is ControlOff).
// When cfg.Parent is a vsock address only its CID is admitted, the
// enclave's one legitimate peer; other peers are logged and closed.
func StartControl(ctx context.Context, cfg Config, log *slog.Logger) (*Control, error) {
	cfg = cfg.Defaults()
	if cfg.Control == ControlOff {
		log.Info("control listener disabled by the configuration")
		return nil, nil
	}
	a, err := nbdconfig.ParseListen(cfg.Control)
	if err != nil {
		return nil, fmt.Errorf("%w: control: %w", ErrConfig, err)
	}
	var allow func(net.Conn) error
	if p, err := ParseParent(cfg.Parent); err == nil && p.Network == "vsock" {
		allow = control.PeerCID(p.CID)
	} else {
		log.Warn("parent is not on vsock: every peer may connect to the control listener", "parent", cfg.Parent)
	}
	l, err := nbdconfig.Listen(ctx, a)
	if err != nil {
		return nil, fmt.Errorf("enclave: control listener: %w", err)
	}
	c := &Control{srv: control.NewServer(allow, log.With("part", "control")), log: log, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		if err := c.srv.Serve(context.WithoutCancel(ctx), l); err != nil {
			log.Error("control listener failed", "err", err)
		}
	}()
	log.Info("control listener ready", "addr", a.String())
	return c, nil
}

// Watch returns a context that is cancelled, with a *StopRequest as its
// cause, when the parent asks for a stop (already or later), as SIGTERM
// cancels ctx.
func (c *Control) Watch(ctx context.Context) (context.Context, context.CancelFunc) {
	sctx, cancel := context.WithCancelCause(ctx)
	if c == nil {
		return sctx, func() { cancel(nil) }
	}
	go func() {
		select {
		case req := <-c.srv.Stops():
			g, set := req.Grace()
			c.log.Info("stop requested by the parent", "grace", g, "grace_given", set)
			cancel(&StopRequest{Grace: g, GraceSet: set})
		case <-sctx.Done():
		}
	}()
	return sctx, func() { cancel(nil) }
}

// AppExited publishes the application's exit status (for Config.AppExited).
func (c *Control) AppExited(status int) {
	if c == nil {
		return
	}
	c.srv.Publish(control.Event{Event: control.EventAppExited, Status: control.Status(status)})
}

// Down publishes the end (nbd-enclave's exit status, err from Run and
// whether the agent's own work succeeded, ExitStatus), waits a little for
// the parent to read it, and closes the listener.
func (c *Control) Down(status int, err error) {
	if c == nil {
		return
	}
	_, clean := ExitStatus(err)
	ev := control.Event{Event: control.EventDown, Status: control.Status(status), Clean: clean}
	if err != nil {
		ev.Error = err.Error()
	}
	c.srv.Publish(ev)
	ctx, cancel := context.WithTimeout(context.Background(), controlFlushTimeout)
	defer cancel()
	if err := c.srv.Close(ctx); err != nil {
		c.log.Warn("control: the last events may be lost", "err", err)
	}
	<-c.done
}

// ExitStatus is nbd-enclave's exit status for Run's error (0; the
// application's status for an *ExitError; 1 for the agent's own
// failures), and whether the agent's setup and teardown succeeded
// (clean), whatever the application's status.
func ExitStatus(err error) (status int, clean bool) {
	if err == nil {
		return 0, true
	}
	var ee *ExitError
	if errors.As(err, &ee) {
		return ee.Code, err == error(ee)
	}
	return 1, false
}
