// Command nbd-parent serves an enclave's block devices from its parent
// instance: the read-only verity image and the read-write run image, as
// named NBD exports over vsock (and TCP or unix sockets for testing).
//
// Usage:
//
//	nbd-parent [--config FILE] [--export NAME=PATH[,ro][,size=SIZE][,cid=N]...]... [--listen URL]...
//	nbd-parent run [--eif FILE] [--data-dir DIR] [--run-size SIZE] [--cpu-count N] [--memory MIB] ...
//
// "nbd-parent run" is the parent's whole job in one process (package
// supervisor): it serves the exports to the enclave's CID, starts the
// enclave with nitro-cli, watches it and stops it cleanly on SIGTERM; its
// exit status says how the enclave ended.
//
// Run "nbd-parent --help" for flags and an example. SIGINT or SIGTERM stops
// accepting connections, lets requests in flight finish, flushes every
// read-write export and exits 0.
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
	"strings"
	"syscall"

	"github.com/enclave-storage/enclave-storage/nbd"
	"github.com/enclave-storage/enclave-storage/nbd/nbdconfig"
	"github.com/enclave-storage/enclave-storage/parentd"
)

const example = `
Example: serve an enclave's root filesystem image and run volume over vsock,
with metrics on localhost:

  nbd-parent --listen vsock://:10809 \
      --export image=/srv/app/rootfs.img,ro \
      --export run=/srv/app/run.img,size=8G,cid=16 \
      --default image --metrics-addr 127.0.0.1:9810

cid=N (repeatable) binds an export to the enclave of that vsock CID
(nitro-cli run-enclave --enclave-cid): another enclave on this parent is
refused it, as are TCP and unix socket peers, which have no CID.

The same from a configuration file (flags add to it):

  {
    "listen": ["vsock://:10809", "unix:///run/enclave/nbd.sock"],
    "default_export": "image",
    "metrics_addr": "127.0.0.1:9810",
    "exports": [
      {"name": "image", "path": "/srv/app/rootfs.img", "read_only": true},
      {"name": "run", "path": "/srv/app/run.img", "size": "8GiB", "cids": [16]}
    ]
  }

An enclave whose run volume key comes from AWS KMS (key spec kms:ARN) also
needs a way to KMS and the instance role's credentials: forward a vsock port
to the region's KMS endpoint, and only there (TLS ends in the enclave), and
serve the credentials on another port:

  nbd-parent --listen vsock://:10809 \
      --export image=/srv/app/rootfs.img,ro \
      --export run=/srv/app/run.img,size=8G --default image \
      --forward vsock://:8000=kms.us-east-1.amazonaws.com:443 \
      --credentials 'vsock://:8001?cid=16'

--credentials takes vsock:// or unix:// only, never tcp://; ?cid=N (the
enclave's CID, as given to nitro-cli run-enclave --enclave-cid) answers
only that enclave and closes connections from any other peer.
Credentials come from the AWS default chain (environment, shared config,
the instance role through IMDS); the region from --region, the AWS
configuration or IMDS. In the configuration file: "forward", "credentials"
and "region".

A read-write export with a size is created sparse the first time and never
resized: an existing file of another size is refused. Each file is locked
(flock) while served, so a second daemon on the same file fails to start.
Try it: nbdinfo --list nbd+unix:///?socket=/run/enclave/nbd.sock
`

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, " ") }
func (l *listFlag) Set(s string) error { *l = append(*l, s); return nil }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// run parses flags, serves until ctx is done and returns the exit code:
// 0 after a clean shutdown, 1 on failure, 2 on bad usage.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "run" {
		return runEnclave(ctx, args[1:], stdout, stderr)
	}
	fs := flag.NewFlagSet("nbd-parent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		configPath  = fs.String("config", "", "JSON configuration `file` (flags below add to it)")
		listens     listFlag
		exports     listFlag
		defExport   = fs.String("default", "", "`export` served to clients asking for the empty name")
		metricsAddr = fs.String("metrics-addr", "", "serve Prometheus metrics on http://`HOST:PORT`/metrics")
		hsTimeout   = fs.Duration("handshake-timeout", nbd.DefaultHandshakeTimeout, "time a client has to finish option negotiation")
		workers     = fs.Int("workers", nbd.DefaultWorkers, "requests executed concurrently per connection")
		maxBlock    = fs.String("max-block-size", "32M", "largest read or write request accepted")
		logLevel    = fs.String("log-level", "info", "debug, info, warn or error")
	)
	fs.Var(&listens, "listen", "listen `URL`: vsock://[CID]:PORT, tcp://HOST:PORT or unix:///PATH (repeatable)")
	var forwards, credListens listFlag
	region := fs.String("region", "", "AWS `region` given to the enclave with the credentials (default: AWS config, then IMDS)")
	fs.Var(&forwards, "forward", "forward connections to one TCP target: `LISTEN=HOST:PORT`, e.g. vsock://:8000=kms.us-east-1.amazonaws.com:443 (repeatable)")
	fs.Var(&credListens, "credentials", "serve the instance role's AWS credentials to the enclave on `URL`: vsock://[CID]:PORT[?cid=ENCLAVE_CID] or unix:///PATH, never tcp (repeatable)")
	fs.Var(&exports, "export", "serve a file: `"+nbdconfig.ExportSyntax+"` (repeatable); cid=N serves it only to the vsock peer of CID N")
	if wantsHelp(args) {
		fs.SetOutput(stdout) // asked-for help goes to stdout
	}
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: nbd-parent [flags]\n       nbd-parent run [flags]   (run an enclave too: nbd-parent run --help)\n\nServe files as NBD exports to an enclave over vsock, TCP or unix sockets.\n\nFlags:\n")
		fs.PrintDefaults()
		fmt.Fprint(fs.Output(), example)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() != 0 {
		fmt.Fprintf(stderr, "nbd-parent: unexpected arguments %q\n", fs.Args())
		return 2
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(stderr, "nbd-parent: --log-level: %v\n", err)
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	cfg := &nbdconfig.Config{}
	if *configPath != "" {
		var err error
		if cfg, err = nbdconfig.Load(*configPath); err != nil {
			log.Error("bad configuration", "err", err)
			return 2
		}
	}
	cfg.Listen = append(cfg.Listen, listens...)
	cfg.Forward = append(cfg.Forward, forwards...)
	cfg.Credentials = append(cfg.Credentials, credListens...)
	if *region != "" {
		cfg.Region = *region
	}
	for _, s := range exports {
		e, err := nbdconfig.ParseExport(s)
		if err != nil {
			log.Error("bad --export", "err", err)
			return 2
		}
		cfg.Exports = append(cfg.Exports, e)
	}
	if *defExport != "" {
		cfg.DefaultExport = *defExport
	}
	if *metricsAddr != "" {
		cfg.MetricsAddr = *metricsAddr
	}
	mbs, err := nbdconfig.ParseSize(*maxBlock)
	if err != nil || mbs > 1<<31 {
		log.Error("bad --max-block-size", "value", *maxBlock)
		return 2
	}
	if err := cfg.Validate(); err != nil {
		log.Error("bad configuration", "err", err)
		return 2
	}
	opts := nbd.Options{
		DefaultExport:    cfg.DefaultExport,
		HandshakeTimeout: *hsTimeout,
		Workers:          *workers,
		MaxBlockSize:     uint32(mbs),
		Logger:           log,
	}
	if err := serve(ctx, cfg, opts, log); err != nil {
		log.Error("nbd-parent failed", "err", err)
		return 1
	}
	return 0
}

// serve opens the exports and listeners and serves until ctx is done.
func serve(ctx context.Context, cfg *nbdconfig.Config, opts nbd.Options, log *slog.Logger) error {
	d, err := parentd.Start(ctx, cfg, parentd.Options{NBD: opts, Logger: log})
	if err != nil {
		return err
	}
	return d.Wait()
}
