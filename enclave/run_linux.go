//go:build linux

package enclave

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/enclave-storage/enclave-storage/keys"
	"github.com/enclave-storage/enclave-storage/nbdkernel"
	"github.com/enclave-storage/enclave-storage/overlay"
)

// TeardownTimeout bounds the teardown after the application has exited.
const TeardownTimeout = 2 * time.Minute

// ExitError reports that the application exited unsuccessfully; Code is its
// exit status (128+signal when killed by a signal, as shells report).
type ExitError struct{ Code int }

func (e *ExitError) Error() string {
	return fmt.Sprintf("enclave: application exited with status %d", e.Code)
}

// Run is the whole mount agent: it reads the pinned verity parameters,
// attaches the image and run exports, opens dm-verity and dm-crypt (LUKS2,
// formatted and mkfs'd on first launch), mounts the overlay root, runs the
// application in it until it exits or ctx is cancelled (SIGTERM, then
// SIGKILL after StopGrace), and tears everything down in reverse. Every
// step's reversal is also run when a later step fails.
func Run(ctx context.Context, cfg Config, log *slog.Logger) (err error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg = cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return err
	}
	undo := NewUndo(log)
	defer func() {
		if err != nil && errors.Is(context.Cause(ctx), ErrStopRequested) {
			// The parent asked for a stop before the application ran:
			// the launch is cancelled, not failed.
			log.Info("launch cancelled by a stop request", "step", err)
			err = nil
		}
		tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), TeardownTimeout)
		defer cancel()
		unix.Sync()
		if uerr := undo.Unwind(tctx); uerr != nil {
			err = errors.Join(err, uerr)
		}
	}()

	// 1. What to trust and how to get there.
	params, err := LoadPinned(cfg.CmdlinePath, cfg.VerityJSONPath)
	if err != nil {
		return err
	}
	kp, err := keys.Parse(cfg.Key)
	if err != nil {
		return fmt.Errorf("%w: key: %w", ErrConfig, err)
	}
	if spec, ok := kp.(keys.KMS); ok {
		if kp, err = kmsSealer(spec, cfg, undo); err != nil {
			return err
		}
	}
	log.Info("pinned image", "root_hash", params.RootHash.String(), "data_blocks", params.DataBlocks)

	// 2. NBD exports on kernel devices.
	nl, err := nbdkernel.Dial()
	if err != nil {
		return err
	}
	// Closed by the undo stack, after the disconnects that need it.
	undo.Push("close netlink socket", func(context.Context) error { return nl.Close() })
	cctx, cancel := context.WithTimeout(ctx, defaultConnectDeadline)
	defer cancel()
	img, err := AttachExport(cctx, nl, cfg, cfg.ImageExport, false, undo)
	if err != nil {
		return err
	}
	log.Info("image attached", "export", cfg.ImageExport, "device", img.Path, "size", img.Export.Size,
		"max_sectors_kb", img.Queue.MaxSectorsKB, "read_ahead_kb", img.Queue.ReadAheadKB)
	warnQueue(log, img.Path, img.QueueErr)
	run, err := AttachExport(cctx, nl, cfg, cfg.RunExport, true, undo)
	if err != nil {
		return err
	}
	log.Info("run volume attached", "export", cfg.RunExport, "device", run.Path, "size", run.Export.Size,
		"max_sectors_kb", run.Queue.MaxSectorsKB, "read_ahead_kb", run.Queue.ReadAheadKB)
	warnQueue(log, run.Path, run.QueueErr)
	if w, err := nbdkernel.NewWatcher(); err != nil {
		log.Warn("cannot watch for dead NBD links; a parent restart will not be bridged", "err", err)
	} else {
		rctx, stop := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			Reconnect(rctx, w, nl, cfg, []*Attached{img, run}, log)
		}()
		undo.Push("stop NBD reconnection", func(context.Context) error {
			stop()
			w.Close()
			<-done
			return nil
		})
	}

	// 3. dm-verity, read-only erofs.
	verityDev, err := OpenVerity(ctx, img, params, undo)
	if err != nil {
		return err
	}
	// erofs reads through dm-verity's queue, whose read-ahead is its own.
	q, err := TuneQueue(verityDev, QueueLimits{ReadAheadKB: img.Queue.ReadAheadKB})
	warnQueue(log, verityDev, err)
	// nodev: the image's device nodes (imgbuild --keep-devices) open nothing.
	if err := Mount(verityDev, cfg.LowerDir, "erofs", unix.MS_RDONLY|unix.MS_NODEV, "", undo); err != nil {
		return err
	}
	log.Info("image mounted", "device", verityDev, "dir", cfg.LowerDir,
		"max_sectors_kb", q.MaxSectorsKB, "read_ahead_kb", q.ReadAheadKB)

	// 4. dm-crypt, ext4.
	cryptDev, fresh, err := OpenRun(ctx, run, kp, cfg.Ephemeral, cfg.formatOptions(), undo, log)
	if err != nil {
		return err
	}
	if fresh {
		st, err := Mkfs(ctx, cryptDev)
		if err != nil {
			return err
		}
		log.Info("run volume formatted", "device", cryptDev, "fs", "ext4", "bytes", st.Size,
			"written", st.BytesWritten, "took", st.Duration.Round(time.Millisecond))
	}
	if err := Mount(cryptDev, cfg.UpperDir, "ext4", unix.MS_NODEV, "", undo); err != nil {
		return err
	}
	log.Info("run volume mounted", "device", cryptDev, "dir", cfg.UpperDir, "new", fresh)

	// 5. overlay root, binds, application.
	o := overlay.Options{
		Lower: []string{cfg.LowerDir},
		Upper: filepath.Join(cfg.UpperDir, "root"),
		Work:  filepath.Join(cfg.UpperDir, "work"),
	}
	for _, d := range []string{o.Upper, o.Work, cfg.RootDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("enclave: %w", err)
		}
	}
	root, err := overlay.NewRoot(cfg.RootDir, o)
	if err != nil {
		return err
	}
	undo.Push("unmount root "+cfg.RootDir, root.Close)
	if err := root.BindSystem(); err != nil {
		return err
	}
	return runApp(ctx, root, cfg, log)
}

// runApp runs the application in root until it exits or ctx is done;
// then it gets SIGTERM, and SIGKILL after the grace period (stopGrace).
func runApp(ctx context.Context, root *overlay.Root, cfg Config, log *slog.Logger) error {
	// The stop is ours rather than exec's, as its grace period is only
	// known when it comes (a parent's request may shorten it).
	cmd, err := root.Command(context.WithoutCancel(ctx), overlay.Process{
		Args: cfg.App.Args(),
		Env:  cfg.App.Env,
		Dir:  cfg.App.WorkingDir,
		User: cfg.App.User,
	}, 0)
	if err != nil {
		return err
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("enclave: starting %s: %w", cmd.Path, err)
	}
	log.Info("application started", "path", cmd.Path, "pid", cmd.Process.Pid)
	if os.Getpid() == 1 {
		rctx, stop := context.WithCancel(context.WithoutCancel(ctx))
		defer stop()
		go ReapOrphans(rctx, cmd.Process.Pid)
	}
	waited := make(chan struct{})
	killed := make(chan struct{})
	go func() {
		defer close(killed)
		select {
		case <-waited:
			return
		case <-ctx.Done():
		}
		grace := stopGrace(ctx, cfg)
		log.Info("stopping the application", "signal", "SIGTERM", "grace", grace, "cause", context.Cause(ctx))
		cmd.Process.Signal(unix.SIGTERM)
		t := time.NewTimer(grace)
		defer t.Stop()
		select {
		case <-waited:
		case <-t.C:
			log.Warn("application still running after the grace period", "signal", "SIGKILL")
			cmd.Process.Kill()
		}
	}()
	err = cmd.Wait()
	close(waited)
	<-killed
	var ee *exec.ExitError
	code := 0
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			code = 128 + int(ws.Signal())
		}
	default:
		return fmt.Errorf("enclave: waiting for %s: %w", cmd.Path, err)
	}
	log.Info("application exited", "status", code, "stopping", ctx.Err() != nil)
	if cfg.AppExited != nil {
		cfg.AppExited(code)
	}
	stopStragglers(cmd.Process.Pid, root.Dir(), stopGrace(ctx, cfg), log)
	if code == 0 || ctx.Err() != nil {
		// We asked it to stop: not the application's failure.
		return nil
	}
	return &ExitError{Code: code}
}

// warnQueue logs err, from TuneQueue, as a warning.
func warnQueue(log *slog.Logger, dev string, err error) {
	if err != nil {
		log.Warn("block queue limits not (all) set; the device keeps the kernel's defaults", "device", dev, "err", err)
	}
}
