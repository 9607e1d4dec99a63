package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/enclave-storage/enclave-storage/nbd/nbdconfig"
	"github.com/enclave-storage/enclave-storage/nitrocli"
	"github.com/enclave-storage/enclave-storage/supervisor"
)

const runExample = `
Environment (a flag given on the command line wins):
  ENCLAVE_CPU_COUNT   --cpu-count
  ENCLAVE_MEMORY_MIB  --memory
  ENCLAVE_CID         --enclave-cid
  ENCLAVE_DEBUG       --debug-mode (true, 1, false, 0)

Example: the image imgbuild --tag writes runs this as its entrypoint;
the whole deployment on a Nitro Enclaves-enabled instance is

  docker run --device /dev/nitro_enclaves -v data:/var/lib/enclave IMAGE

and by hand, with more memory and the console on stdout:

  nbd-parent run --eif /enclave/enclave.eif --data-dir /var/lib/enclave \
      --run-size 8G --memory 2048 --cpu-count 2 --enclave-cid 16 \
      --debug-mode --metrics-addr 127.0.0.1:9810

It creates (or reuses) run.img in --data-dir, serves rootfs.img (next to
the EIF, read-only) and run.img over vsock to the enclave's CID only,
starts the enclave with nitro-cli run-enclave and watches it. SIGTERM or
SIGINT asks nbd-enclave to stop the application (SIGTERM, --stop-grace,
SIGKILL, unmount) over vsock port 9100, then terminates the enclave if it
is still there, flushes the run image and exits with:

  0  the application exited 0, or stopped cleanly on request
  N  the application exited by itself with status N
  1  nbd-parent failed (exports, nitro-cli, CID, serving)
  2  bad usage or configuration
  3  no clean stop: terminated after the grace period, or teardown failed
  4  the enclave vanished without reporting its teardown

Health: http://METRICS-ADDR/healthz (200 while the enclave runs);
gauges enclave_up and enclave_state next to the NBD metrics.
`

// runEnclave is "nbd-parent run": serve the exports, start the enclave,
// watch it, stop it on ctx.
func runEnclave(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("nbd-parent run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		eif         = fs.String("eif", "/enclave/enclave.eif", "enclave image `file`; rootfs.img next to it is the image export")
		dataDir     = fs.String("data-dir", "/var/lib/enclave", "`directory` (a volume) holding run.img")
		runSize     = fs.String("run-size", "8G", "run image `size`, created sparse on first start, never resized")
		cpuCount    = fs.Int("cpu-count", supervisor.DefaultCPUCount, "enclave vCPUs (env ENCLAVE_CPU_COUNT)")
		memory      = fs.Uint64("memory", 0, "enclave memory in `MiB` (env ENCLAVE_MEMORY_MIB; 0: nitro-cli's floor, 4 x the EIF's size)")
		cid         = fs.Uint("enclave-cid", supervisor.DefaultCID, "enclave vsock context `ID`; the exports are served to it only (env ENCLAVE_CID)")
		debug       = fs.Bool("debug-mode", false, "start in debug mode and copy the console to stdout (env ENCLAVE_DEBUG)")
		grace       = fs.Duration("stop-grace", supervisor.DefaultStopGrace, "the application's time to exit after SIGTERM")
		margin      = fs.Duration("stop-margin", supervisor.DefaultStopMargin, "time for the teardown after --stop-grace before terminate-enclave")
		metricsAddr = fs.String("metrics-addr", "", "serve Prometheus metrics and /healthz on http://`HOST:PORT`")
		nitroCLI    = fs.String("nitro-cli", "nitro-cli", "nitro-cli `executable`")
		region      = fs.String("region", "", "AWS `region` given to the enclave with the credentials")
		logLevel    = fs.String("log-level", "info", "debug, info, warn or error")
		listens     listFlag
		forwards    listFlag
		credListens listFlag
	)
	fs.Var(&listens, "listen", "NBD listen `URL` (repeatable; default "+supervisor.DefaultListen+")")
	fs.Var(&forwards, "forward", "forward connections to one TCP target: `LISTEN=HOST:PORT` (repeatable), as plain nbd-parent")
	fs.Var(&credListens, "credentials", "serve the instance role's AWS credentials on `URL` (repeatable), as plain nbd-parent")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: nbd-parent run [flags]\n\nRun an enclave and serve its block devices: the parent's whole job in one process.\n\nFlags:\n")
		fs.PrintDefaults()
		fmt.Fprint(fs.Output(), runExample)
	}
	if wantsHelp(args) {
		fs.SetOutput(stdout)
	}
	usage := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "nbd-parent run: "+format+"\n", a...)
		return supervisor.ExitUsage
	}
	// The environment gives defaults; flags override them.
	for _, e := range []struct{ env, flag string }{
		{"ENCLAVE_CPU_COUNT", "cpu-count"}, {"ENCLAVE_MEMORY_MIB", "memory"},
		{"ENCLAVE_CID", "enclave-cid"}, {"ENCLAVE_DEBUG", "debug-mode"},
	} {
		if v, ok := os.LookupEnv(e.env); ok && v != "" {
			if err := fs.Set(e.flag, v); err != nil {
				return usage("$%s=%q: %v", e.env, v, err)
			}
		}
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return supervisor.ExitUsage
	}
	if fs.NArg() != 0 {
		return usage("unexpected arguments %q", fs.Args())
	}
	size, err := nbdconfig.ParseSize(*runSize)
	if err != nil {
		return usage("--run-size: %v", err)
	}
	if *cid > 0xffffffff {
		return usage("--enclave-cid %d is not a 32-bit context ID", *cid)
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return usage("--log-level: %v", err)
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	s := &supervisor.Supervisor{
		Config: supervisor.Config{
			EIF: *eif, DataDir: *dataDir, RunSize: int64(size),
			CPUCount: *cpuCount, MemoryMiB: *memory, CID: uint32(*cid), Debug: *debug,
			StopGrace: *grace, StopMargin: *margin,
			Listen: listens, MetricsAddr: *metricsAddr,
			Forward: forwards, Credentials: credListens, Region: *region,
		},
		CLI:     &nitrocli.Exec{Path: *nitroCLI, Stderr: stderr},
		Dial:    dialControl,
		Logger:  log,
		Console: stdout,
	}
	res, _ := s.Run(ctx) // the error is logged as the enclave's end
	return res.ExitCode()
}

// wantsHelp reports a help flag before "--": asked-for help goes to
// stdout.
func wantsHelp(args []string) bool {
	for _, a := range args {
		if a == "--" {
			break
		}
		if a == "-h" || a == "-help" || a == "--help" || a == "--h" {
			return true
		}
	}
	return false
}
