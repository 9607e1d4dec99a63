package supervisor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/enclave-storage/enclave-storage/control"
	"github.com/enclave-storage/enclave-storage/nbd"
	"github.com/enclave-storage/enclave-storage/nbd/nbdconfig"
	"github.com/enclave-storage/enclave-storage/nitrocli"
	"github.com/enclave-storage/enclave-storage/parentd"
	"github.com/prometheus/client_golang/prometheus"
)

// Defaults for Config fields left zero.
const (
	DefaultCPUCount     = 2
	DefaultCID          = 16
	DefaultStopGrace    = 10 * time.Second
	DefaultStopMargin   = 10 * time.Second
	DefaultPollInterval = time.Second
	DefaultListen       = "vsock://:10809"
	// RunImage is the run image's file name in the data directory.
	RunImage = "run.img"
	// RootfsImage is the verity image's file name, next to the EIF.
	RootfsImage = "rootfs.img"
)

// ErrConfig reports a configuration that cannot work; nothing was started.
var ErrConfig = errors.New("supervisor: bad configuration")

// Controller is the control channel to a running nbd-enclave (package
// control's Client).
type Controller interface {
	// Stop asks the enclave to stop its application within grace.
	Stop(ctx context.Context, grace time.Duration) error
	// Next returns the next event; io.EOF once the enclave closed.
	Next(ctx context.Context) (Event, error)
	Close() error
}

// Config is what to run and how.
type Config struct {
	// EIF is the enclave image; RootfsImage next to it is the image
	// export.
	EIF string
	// DataDir holds RunImage.
	DataDir string
	// RunSize is the run image's size in bytes.
	RunSize int64
	// CPUCount (default DefaultCPUCount) and MemoryMiB (default: the
	// least nitro-cli accepts for the EIF, nitrocli.MinMemoryMiB) are
	// the enclave's resources.
	CPUCount  int
	MemoryMiB uint64
	// CID is the enclave's vsock context ID, to which the exports are
	// bound; default DefaultCID.
	CID uint32
	// Debug starts the enclave in debug mode and copies its console to
	// Supervisor.Console.
	Debug bool
	// StopGrace is the application's time to exit after SIGTERM;
	// StopMargin is added for the teardown before terminate-enclave.
	StopGrace, StopMargin time.Duration
	// PollInterval is the time between two describe-enclaves.
	PollInterval time.Duration
	// Listen are the NBD listeners; default DefaultListen.
	Listen []string
	// MetricsAddr serves metrics and /healthz; empty: none.
	MetricsAddr string
	// Forward, Credentials and Region are nbd-parent's KMS options
	// (nbdconfig.Config).
	Forward, Credentials []string
	Region               string
	// NBD are the NBD server's options.
	NBD nbd.Options
}

// Supervisor runs one enclave. Fields other than Config may be left nil
// except CLI and Dial.
type Supervisor struct {
	Config
	// CLI starts, lists and terminates enclaves.
	CLI nitrocli.CLI
	// Dial opens the control channel to the enclave of CID.
	Dial func(ctx context.Context, cid uint32) (Controller, error)
	// Listen opens the NBD and KMS listeners; nil means nbdconfig.Listen.
	Listen func(context.Context, nbdconfig.Addr) (net.Listener, error)
	// Logger receives one line per step; nil discards them.
	Logger *slog.Logger
	// Console receives the console of a debug-mode enclave; nil:
	// os.Stdout.
	Console io.Writer
	// Registry collects the metrics; nil means a new one.
	Registry *prometheus.Registry
	// Ready, if not nil, is called with the daemon once the exports are
	// served, before the enclave starts (tests read its addresses).
	Ready func(*parentd.Daemon)
}

// Outcome says how an enclave ended.
type Outcome int

// Outcomes, in the order of the exit status table (see the package doc).
const (
	// Failed: nbd-parent failed; exit status 1.
	Failed Outcome = iota
	// Exited: the application exited by itself and the enclave reported
	// its teardown; exit status 0 or the application's.
	Exited
	// Stopped: stopped on request with a clean teardown; exit status 0.
	Stopped
	// Unclean: a stop without a clean "down" in time (terminated), or a
	// failed teardown; exit status 3.
	Unclean
	// Vanished: the enclave disappeared without "down"; exit status 4.
	Vanished
	// Invalid: the configuration cannot work (ErrConfig), nothing was
	// started; exit status 2.
	Invalid
)

var outcomeNames = [...]string{"failed", "app-exited", "stopped", "unclean", "vanished", "invalid"}

func (o Outcome) String() string { return outcomeNames[o] }

// Exit statuses of their own (see the package doc).
const (
	ExitFailed   = 1
	ExitUsage    = 2
	ExitUnclean  = 3
	ExitVanished = 4
)

// Result is how the enclave ended.
type Result struct {
	Outcome Outcome
	// Status is the application's exit status, when the enclave told.
	Status *int
	// Terminated: nbd-parent ran terminate-enclave.
	Terminated bool
	// EnclaveID is nitro-cli's ID of the enclave, once started.
	EnclaveID string
}

// ExitCode is the process exit status for r (see the package doc).
func (r Result) ExitCode() int {
	switch r.Outcome {
	case Stopped:
		return 0
	case Exited:
		if r.Status != nil {
			return *r.Status & 0xff
		}
		return 0
	case Unclean:
		return ExitUnclean
	case Vanished:
		return ExitVanished
	case Invalid:
		return ExitUsage
	}
	return ExitFailed
}

func (s *Supervisor) withDefaults() (Config, error) {
	c := s.Config
	if c.CPUCount == 0 {
		c.CPUCount = DefaultCPUCount
	}
	if c.CID == 0 {
		c.CID = DefaultCID
	}
	if c.StopGrace == 0 {
		c.StopGrace = DefaultStopGrace
	}
	if c.StopMargin == 0 {
		c.StopMargin = DefaultStopMargin
	}
	if c.PollInterval == 0 {
		c.PollInterval = DefaultPollInterval
	}
	if len(c.Listen) == 0 {
		c.Listen = []string{DefaultListen}
	}
	bad := func(format string, a ...any) (Config, error) {
		return c, fmt.Errorf("%w: "+format, append([]any{ErrConfig}, a...)...)
	}
	switch {
	case c.CID <= 3 || c.CID == 0xffffffff:
		// nitro-cli's parse_enclave_cid refuses 1, 2 and -1U, its
		// VMADDR_CID_PARENT is 3; 0 (nitro-cli picks one) would leave
		// the exports unbound until it answered.
		return bad("CID %d is a well-known CID or the parent's, not an enclave's", c.CID)
	case c.CPUCount < 1:
		return bad("CPU count %d", c.CPUCount)
	case c.RunSize <= 0:
		return bad("run image size %d", c.RunSize)
	case c.StopGrace < 0 || c.StopMargin < 0 || c.PollInterval < 0:
		return bad("negative durations")
	case c.DataDir == "":
		return bad("no data directory")
	}
	fi, err := os.Stat(c.EIF)
	if err != nil {
		return bad("EIF: %w", err)
	}
	if minMiB := nitrocli.MinMemoryMiB(fi.Size()); c.MemoryMiB == 0 {
		c.MemoryMiB = minMiB
	} else if c.MemoryMiB < minMiB {
		return bad("%d MiB of memory: nitro-cli needs at least %d MiB for %s (4 times its size)", c.MemoryMiB, minMiB, c.EIF)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(c.EIF), RootfsImage)); err != nil {
		return bad("image export: %w", err)
	}
	return c, nil
}

// nbdConfig is what parentd serves for c.
func (c *Config) nbdConfig() *nbdconfig.Config {
	cids := []uint32{nitrocli.PeerCID(c.CID)}
	return &nbdconfig.Config{
		Listen:        c.Listen,
		DefaultExport: "image",
		MetricsAddr:   c.MetricsAddr,
		Exports: []nbdconfig.Export{
			{Name: "image", Path: filepath.Join(filepath.Dir(c.EIF), RootfsImage), ReadOnly: true, CIDs: cids, Description: "verity image"},
			{Name: "run", Path: filepath.Join(c.DataDir, RunImage), Size: nbdconfig.Size(c.RunSize), CIDs: cids, Description: "run volume"},
		},
		Forward:     c.Forward,
		Credentials: c.Credentials,
		Region:      c.Region,
	}
}

// run is one Run's state.
type run struct {
	*Supervisor
	cfg   Config
	log   *slog.Logger
	state *state
	res   Result

	events chan Event // from the control channel
	ctlEOF chan error // the control channel ended, with why
	mu     sync.Mutex
	ctl    Controller // nil until connected

	appExited *int
	ctlClosed bool // ctlEOF was received
}

// Run serves the exports, starts the enclave and watches it until it
// ends; when ctx is done it stops the enclave (see the package doc). The
// error, if any, says why nbd-parent failed or the enclave ended
// uncleanly; the Result says how it ended either way.
func (s *Supervisor) Run(ctx context.Context) (Result, error) {
	log := s.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg, err := s.withDefaults()
	if err != nil {
		log.Error("nbd-parent cannot start", "err", err)
		return Result{Outcome: Invalid}, err
	}
	reg := s.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	st, err := newState(reg)
	if err != nil {
		return Result{Outcome: Failed}, err
	}
	r := &run{Supervisor: s, cfg: cfg, log: log, state: st, events: make(chan Event, 16), ctlEOF: make(chan error, 1)}
	return r.run(ctx, reg)
}

func (r *run) run(ctx context.Context, reg *prometheus.Registry) (Result, error) {
	cfg := &r.cfg
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return r.fail(fmt.Errorf("data directory: %w", err))
	}
	ncfg := cfg.nbdConfig()
	if err := ncfg.Validate(); err != nil {
		res, err := r.fail(fmt.Errorf("%w: %w", ErrConfig, err))
		res.Outcome = Invalid
		return res, err
	}
	// Serving outlives ctx: the enclave unmounts over NBD after a stop.
	serveCtx, stopServing := context.WithCancel(context.WithoutCancel(ctx))
	defer stopServing()
	d, err := parentd.Start(serveCtx, ncfg, parentd.Options{NBD: cfg.NBD, Logger: r.log, Registry: reg,
		Handlers: map[string]http.Handler{"/healthz": r.state}, Listen: r.Listen})
	if err != nil {
		return r.fail(err)
	}
	finish := func(res Result, err error) (Result, error) {
		stopServing()
		if derr := d.Wait(); derr != nil {
			r.log.Error("serving the exports failed", "err", derr)
			res.Outcome, err = Failed, errors.Join(err, derr)
		}
		r.state.set(stateStopped)
		r.log.Info("enclave ended", "how", res.Outcome.String(), "exit_status", res.ExitCode(), "app_status", statusAttr(res.Status), "terminated", res.Terminated, "err", err)
		return res, err
	}
	if r.Ready != nil {
		r.Ready(d)
	}

	// nitro-cli is not interrupted: a run-enclave cut short may leave an
	// enclave nobody knows the ID of. A stop asked meanwhile follows.
	opts := nitrocli.RunOptions{EIFPath: cfg.EIF, CPUCount: cfg.CPUCount, MemoryMiB: cfg.MemoryMiB, CID: cfg.CID, Debug: cfg.Debug}
	r.log.Info("starting the enclave", "eif", cfg.EIF, "cpu_count", cfg.CPUCount, "memory_mib", cfg.MemoryMiB, "cid", cfg.CID, "debug_mode", cfg.Debug)
	ri, err := r.CLI.RunEnclave(context.WithoutCancel(ctx), opts)
	if err != nil {
		return finish(Result{Outcome: Failed}, fmt.Errorf("starting the enclave: %w", err))
	}
	r.res.EnclaveID = ri.EnclaveID
	r.log.Info("enclave started", "enclave_id", ri.EnclaveID, "cid", ri.EnclaveCID, "cpu_ids", ri.CPUIDs, "memory_mib", ri.MemoryMiB)
	if peer := nitrocli.PeerCID(cfg.CID); ri.EnclaveCID != uint64(peer) {
		err := fmt.Errorf("nitro-cli started the enclave with CID %d, not the %d its exports are bound to", ri.EnclaveCID, peer)
		r.log.Error("wrong CID; terminating the enclave", "err", err)
		r.terminate()
		r.res.Outcome = Failed
		return finish(r.res, err)
	}
	r.state.set(stateRunning)

	watch, stopWatch := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	defer wg.Wait()
	defer stopWatch()
	if cfg.Debug {
		wg.Go(func() {
			w := r.Console
			if w == nil {
				w = os.Stdout
			}
			if err := r.CLI.Console(watch, ri.EnclaveID, w); err != nil {
				r.log.Warn("console ended", "err", err)
			}
		})
	}
	wg.Go(func() { r.control(watch) })

	res, err := r.watch(ctx, d)
	stopWatch()
	return finish(res, err)
}

func statusAttr(p *int) any {
	if p == nil {
		return "unknown"
	}
	return *p
}

// fail ends a Run before the enclave started.
func (r *run) fail(err error) (Result, error) {
	r.state.set(stateStopped)
	r.log.Error("nbd-parent failed", "err", err)
	return Result{Outcome: Failed}, err
}

// control connects to the enclave's control channel, retrying until it
// answers or ctx is done, and forwards its events.
func (r *run) control(ctx context.Context) {
	var c Controller
	for delay := 100 * time.Millisecond; ; delay = min(2*delay, 2*time.Second) {
		var err error
		if c, err = r.Dial(ctx, nitrocli.PeerCID(r.cfg.CID)); err == nil {
			break
		}
		r.log.Debug("control channel not up yet", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
	}
	r.log.Info("control channel connected", "cid", nitrocli.PeerCID(r.cfg.CID))
	r.mu.Lock()
	r.ctl = c
	r.mu.Unlock()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	for {
		ev, err := c.Next(ctx)
		if err != nil {
			r.ctlEOF <- err
			return
		}
		select {
		case r.events <- ev:
		case <-ctx.Done():
			return
		}
	}
}

// controller returns the connected control channel, or nil.
func (r *run) controller() Controller {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ctl
}

// watch waits for the enclave to end, or for ctx (a stop) or serving to
// fail, and then stops it.
func (r *run) watch(ctx context.Context, d *parentd.Daemon) (Result, error) {
	poll := time.NewTicker(r.cfg.PollInterval)
	defer poll.Stop()
	for {
		select {
		case <-ctx.Done():
			r.log.Info("stop requested", "cause", context.Cause(ctx))
			return r.stop(Stopped, nil)
		case <-d.Done():
			err := errors.New("serving the exports stopped")
			r.log.Error("serving failed; stopping the enclave", "err", err)
			res, serr := r.stop(Failed, err)
			res.Outcome = Failed
			return res, serr
		case ev := <-r.events:
			if done, res, err := r.event(ev, false); done {
				return res, err
			}
		case err := <-r.ctlEOF:
			r.log.Info("control channel closed", "err", err)
			r.ctlClosed = true
			if gone, res, err := r.checkGone(); gone {
				return res, err
			}
		case <-poll.C:
			if gone, res, err := r.checkGone(); gone {
				return res, err
			}
		}
	}
}

// event handles one control event; done reports that the enclave's end
// is settled.
func (r *run) event(ev Event, stopping bool) (done bool, res Result, err error) {
	r.log.Info("enclave event", "event", ev.Event, "status", statusAttr(ev.Status), "clean", ev.Clean, "error", ev.Error)
	switch ev.Event {
	case control.EventAppExited:
		r.appExited = ev.Status
	case control.EventDown:
		if ev.Status != nil {
			r.appExited = ev.Status
		}
		r.res.Status = r.appExited
		r.awaitGone()
		switch {
		case !ev.Clean:
			r.res.Outcome = Unclean
			return true, r.res, fmt.Errorf("enclave teardown failed: %s", ev.Error)
		case stopping:
			r.res.Outcome = Stopped
		default:
			r.res.Outcome = Exited
		}
		return true, r.res, nil
	}
	return false, r.res, nil
}

// listed reports whether the enclave is still listed by nitro-cli
// (running or terminating).
func (r *run) listed() (bool, error) {
	es, err := r.CLI.DescribeEnclaves(context.Background())
	if err != nil {
		return false, err
	}
	return slices.ContainsFunc(es, func(e nitrocli.EnclaveInfo) bool { return e.EnclaveID == r.res.EnclaveID }), nil
}

// checkGone ends the watch if the enclave is no longer listed.
func (r *run) checkGone() (bool, Result, error) {
	on, err := r.listed()
	if err != nil {
		r.log.Warn("describe-enclaves failed", "err", err)
		return false, r.res, nil
	}
	if on {
		return false, r.res, nil
	}
	// The enclave may leave the list before its last events ("down")
	// are read off the control channel: read them until it closes.
	wait := time.After(r.cfg.StopMargin)
	for r.controller() != nil && !r.ctlClosed {
		select {
		case ev := <-r.events:
			if done, res, err := r.event(ev, r.state.get() == stateStopping); done {
				return true, res, err
			}
			continue
		case err := <-r.ctlEOF:
			r.log.Info("control channel closed", "err", err)
			r.ctlClosed = true
		case <-wait:
		}
		break
	}
	for {
		select {
		case ev := <-r.events:
			if done, res, err := r.event(ev, r.state.get() == stateStopping); done {
				return true, res, err
			}
			continue
		default:
		}
		break
	}
	r.res.Outcome = Vanished
	r.res.Status = r.appExited
	return true, r.res, errors.New("the enclave is gone without reporting its teardown")
}

// awaitGone gives an enclave that reported "down" StopMargin to leave the
// list, and terminates it if it does not.
func (r *run) awaitGone() {
	deadline := time.Now().Add(r.cfg.StopMargin)
	for {
		on, err := r.listed()
		if err == nil && !on {
			return
		}
		if time.Now().After(deadline) {
			r.terminate()
			return
		}
		time.Sleep(min(r.cfg.PollInterval, time.Until(deadline)+time.Millisecond))
	}
}

// terminate runs terminate-enclave.
func (r *run) terminate() {
	r.log.Info("terminating the enclave", "enclave_id", r.res.EnclaveID)
	ti, err := r.CLI.TerminateEnclave(context.Background(), r.res.EnclaveID)
	if err != nil {
		r.log.Error("terminate-enclave failed", "err", err)
		return
	}
	r.res.Terminated = true
	r.log.Info("enclave terminated", "enclave_id", ti.EnclaveID, "terminated", ti.Terminated)
}

// stop asks the enclave to stop over the control channel, waits for its
// "down" up to grace + margin, and terminates it if it is still listed.
// why is the outcome of a clean stop.
func (r *run) stop(why Outcome, cause error) (Result, error) {
	r.state.set(stateStopping)
	grace, margin := r.cfg.StopGrace, r.cfg.StopMargin
	deadline := time.Now().Add(grace + margin)
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	// The watcher may still be dialling: the request goes out as soon
	// as the channel is up, retried on every poll.
	sent := false
	send := func() {
		c := r.controller()
		if sent || c == nil {
			return
		}
		sent = true
		r.log.Info("asking the enclave to stop", "grace", grace)
		if err := c.Stop(ctx, grace); err != nil {
			r.log.Warn("stop request failed", "err", err)
		}
	}
	send()
	if !sent {
		r.log.Warn("no control channel yet to ask for a clean stop; waiting for it")
	}
	poll := time.NewTicker(r.cfg.PollInterval)
	defer poll.Stop()
	for {
		select {
		case ev := <-r.events:
			if done, res, err := r.event(ev, true); done {
				if res.Outcome == Stopped {
					res.Outcome = why
				}
				return res, errors.Join(cause, err)
			}
		case <-poll.C:
			send()
			if gone, res, err := r.checkGone(); gone {
				return res, errors.Join(cause, err)
			}
		case <-ctx.Done():
			r.log.Warn("no clean teardown within the grace period and margin", "grace", grace, "margin", margin)
			if on, err := r.listed(); err != nil || on {
				r.terminate()
			}
			r.res.Outcome = Unclean
			r.res.Status = r.appExited
			return r.res, errors.Join(cause, errors.New("the enclave did not report a clean teardown in time"))
		}
	}
}
