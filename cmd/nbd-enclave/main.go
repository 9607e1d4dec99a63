//go:build linux

// Command nbd-enclave is the enclave's mount agent and init: it attaches
// the parent's NBD exports, opens dm-verity and dm-crypt, mounts the
// application's overlay root, runs the application in it and tears it all
// down when the application exits, on SIGTERM, or when the parent asks
// over the control channel (package control, vsock port 9100). The logic
// is in package enclave; this file is flags, logging and signals.
//
// Usage:
//
//	nbd-enclave [flags] [-- ENTRYPOINT [ARG...]]
//
// Example (loopback test against nbd-parent on vsock CID 1):
//
//	nbd-enclave --parent vsock://1:10809 --key random: --ephemeral -- /bin/sh -c 'echo hi > /data'
//
// Run as PID 1 it first does an init's duties (enclave.InitSystem) and
// sends nitro-cli's boot heartbeat (enclave.Heartbeat), and reboots the
// machine when done instead of exiting, which ends the enclave.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/enclave-storage/enclave-storage/enclave"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	code := run(ctx, log, os.Args[1:], os.Stderr)
	if os.Getpid() == 1 {
		// The kernel panics when init exits; the reference init reboots,
		// which ends the enclave.
		log.Info("rebooting to end the enclave", "status", code)
		if err := enclave.Reboot(); err != nil {
			log.Error("reboot", "err", err)
		}
		select {}
	}
	os.Exit(code)
}

// run returns the exit status: 0, the application's non-zero status, 1 for
// an agent failure, 2 for a usage error.
func run(ctx context.Context, log *slog.Logger, args []string, stderr io.Writer) int {
	if os.Getpid() == 1 {
		if err := enclave.InitSystem(log); err != nil {
			log.Error("init", "err", err)
			return 1
		}
		if err := enclave.LoadModules(ctx, "/", log); err != nil {
			log.Error("init", "err", err)
			return 1
		}
	}
	if os.Getpid() == 1 && len(args) > 0 {
		// The kernel hands init the command line's words it does not know
		// (nitro-cli's "nomodules"): they are not ours to parse, and one
		// would replace the application's entrypoint. The reference init
		// ignores its arguments too; the measured config.json rules.
		log.Info("ignoring the kernel's arguments to init", "args", args)
		args = nil
	}
	cfg, err := parseConfig(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		log.Error("configuration", "err", err)
		return 2
	}
	if cfg.Attester, err = testAttester(); err != nil {
		log.Error("test NSM", "err", err)
		return 1
	}
	if cfg.Attester != nil {
		log.Warn("built with the fakensm tag: attestation documents come from a test NSM that no real KMS key policy accepts")
	}
	// Listening before the heartbeat: when nitro-cli run-enclave returns,
	// the parent's supervisor can connect at once.
	ctl, err := enclave.StartControl(ctx, cfg, log)
	if err != nil {
		log.Error("control", "err", err)
		return 1
	}
	if os.Getpid() == 1 {
		// nitro-cli stops an enclave whose init sends no heartbeat.
		if err := enclave.Heartbeat(ctx, cfg, log); err != nil {
			ctl.Down(1, err)
			return 1
		}
	}
	// A parent's stop request cancels the run as SIGTERM does.
	sctx, cancel := ctl.Watch(ctx)
	defer cancel()
	cfg.AppExited = ctl.AppExited
	err = enclave.Run(sctx, cfg, log)
	code, clean := enclave.ExitStatus(err)
	switch {
	case err == nil:
	case code != 1 && !clean:
		log.Error("teardown after the application exited", "err", err)
	case code == 1 && !clean:
		log.Error("nbd-enclave failed", "err", err)
	}
	ctl.Down(code, err)
	return code
}

// parseConfig reads the configuration file (when present) and applies the
// flags that were set on top of it.
func parseConfig(args []string, stderr io.Writer) (enclave.Config, error) {
	fs := flag.NewFlagSet("nbd-enclave", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		configPath  = fs.String("config", enclave.DefaultConfigJSONPath, "configuration JSON; a missing file at the default path is not an error")
		parent      = fs.String("parent", "", "nbd-parent address: vsock://CID:PORT, tcp://HOST:PORT or unix:///PATH (default "+enclave.DefaultParent+")")
		heartbeat   = fs.String("heartbeat", "", "where to send the boot heartbeat as PID 1, same syntax as --parent, or "+enclave.HeartbeatOff+" (default "+enclave.DefaultHeartbeat+")")
		controlAddr = fs.String("control", "", "where to listen for the parent's stop requests: vsock://[CID]:PORT, tcp://HOST:PORT, unix:///PATH or "+enclave.ControlOff+" (default "+enclave.DefaultControl+")")
		imageExport = fs.String("image-export", "", "NBD export of the verity image (default "+enclave.DefaultImageExport+")")
		runExport   = fs.String("run-export", "", "NBD export of the encrypted run volume (default "+enclave.DefaultRunExport+")")
		key         = fs.String("key", "", "run volume key provider: file:PATH, env:NAME, random: (with --ephemeral) or kms:ARN[,OPTIONS] (see below)")
		ephemeral   = fs.Bool("ephemeral", false, "format the run volume on every launch (scratch space; needs --key random:)")
		lower       = fs.String("lower", "", "mount point of the image (default "+enclave.DefaultLowerDir+")")
		upper       = fs.String("upper", "", "mount point of the run volume (default "+enclave.DefaultUpperDir+")")
		root        = fs.String("root", "", "mount point of the application's overlay root (default "+enclave.DefaultRootDir+")")
		cmdline     = fs.String("cmdline", enclave.DefaultCmdlinePath, "kernel command line carrying "+enclave.CmdlineVerityRoot+"=HEX")
		verityJSON  = fs.String("verity-json", enclave.DefaultVerityJSONPath, "verity parameters written by imgbuild")
		timeout     = fs.Duration("nbd-timeout", 0, "kernel NBD request timeout (default 30s)")
		deadConn    = fs.Duration("nbd-dead-conn-timeout", 0, "how long I/O waits for a reconnect after the connection dies (default 2m)")
		grace       = fs.Duration("stop-grace", 0, "time between SIGTERM and SIGKILL for the application (default 10s)")
	)
	fs.Usage = func() {
		fmt.Fprintf(stderr, `Usage: nbd-enclave [flags] [-- ENTRYPOINT [ARG...]]

Mount agent and init of an enclave: attaches the parent's NBD exports over
vsock, opens the dm-verity image (root hash pinned on the kernel command
line) and the LUKS2 run volume (formatted on first launch), mounts an
overlay root and runs the application in it until it exits or SIGTERM.

Example (loopback test against nbd-parent on vsock CID 1):

  nbd-enclave --parent vsock://1:10809 --key random: --ephemeral -- /bin/sh -c 'echo hi > /data'

Flags override %s. Arguments after -- replace the image's
entrypoint and command.

Keys from KMS: --key kms:arn:aws:kms:REGION:ACCOUNT:key/ID seals the run
volume's key with AWS KMS, which releases it only to this enclave's Nitro
attestation (the key policy names the PCRs). The first launch asks KMS for
a data key (GenerateDataKey) and stores its ciphertext as a LUKS2 token
("enclave-storage-kms", keyslot 0); later launches Decrypt it. KMS is
reached through nbd-parent's vsock forwarder (--forward), with TLS ending
in the enclave; credentials come from nbd-parent (--credentials).
Comma-separated options after the ARN: cid=N (parent's vsock CID, default 3),
port=N (forwarder port, default 8000), credentials-port=N (default 8001).
KMS's TLS certificate must chain to the CA roots built into this binary
(ca=/PATH replaces them only in test builds, -tags fakensm). A LUKS volume
without the token is refused, never reformatted.

Flags:
`, enclave.DefaultConfigJSONPath)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return enclave.Config{}, err
	}
	cfg, err := enclave.LoadConfig(*configPath)
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if errors.Is(err, os.ErrNotExist) && !set["config"] {
		cfg, err = enclave.Config{}, nil
	}
	if err != nil {
		return cfg, err
	}
	str := func(name string, dst *string, v string) {
		if set[name] {
			*dst = v
		}
	}
	str("parent", &cfg.Parent, *parent)
	str("heartbeat", &cfg.Heartbeat, *heartbeat)
	str("control", &cfg.Control, *controlAddr)
	str("image-export", &cfg.ImageExport, *imageExport)
	str("run-export", &cfg.RunExport, *runExport)
	str("key", &cfg.Key, *key)
	str("lower", &cfg.LowerDir, *lower)
	str("upper", &cfg.UpperDir, *upper)
	str("root", &cfg.RootDir, *root)
	cfg.CmdlinePath, cfg.VerityJSONPath = *cmdline, *verityJSON
	if set["ephemeral"] {
		cfg.Ephemeral = *ephemeral
	}
	dur := func(name string, dst *enclave.Duration, v time.Duration) {
		if set[name] {
			*dst = enclave.Duration(v)
		}
	}
	dur("nbd-timeout", &cfg.Timeout, *timeout)
	dur("nbd-dead-conn-timeout", &cfg.DeadConnTimeout, *deadConn)
	dur("stop-grace", &cfg.StopGrace, *grace)
	if rest := fs.Args(); len(rest) > 0 {
		cfg.App.Entrypoint, cfg.App.Cmd = rest, nil
	}
	cfg = cfg.Defaults()
	return cfg, cfg.Validate()
}
