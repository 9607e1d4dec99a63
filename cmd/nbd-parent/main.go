// Command nbd-parent serves an enclave's block devices from its parent
// instance: the read-only verity image and the read-write run image, as
// named NBD exports over vsock (and TCP or unix sockets for testing).
//
// Usage:
//
//	nbd-parent [--config FILE] [--export NAME=PATH[,ro][,size=SIZE][,cid=N]...]... [--listen URL]...
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
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/enclave-storage/enclave-storage/nbd"
	"github.com/enclave-storage/enclave-storage/nbd/nbdconfig"
	"github.com/enclave-storage/enclave-storage/parentcreds"
	"github.com/enclave-storage/enclave-storage/vsockproxy"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
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
	for _, a := range args {
		if a == "--" {
			break
		}
		if a == "-h" || a == "-help" || a == "--help" || a == "--h" {
			fs.SetOutput(stdout) // asked-for help goes to stdout
		}
	}
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: nbd-parent [flags]\n\nServe files as NBD exports to an enclave over vsock, TCP or unix sockets.\n\nFlags:\n")
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
func serve(ctx context.Context, cfg *nbdconfig.Config, opts nbd.Options, log *slog.Logger) (err error) {
	var files []*nbd.File
	defer func() {
		for _, f := range files {
			if cerr := f.Close(); cerr != nil {
				err = errors.Join(err, cerr)
			}
		}
	}()
	var exports []*nbd.Export
	for _, e := range cfg.Exports {
		f, err := nbd.OpenFile(e.Path, nbd.FileOptions{ReadOnly: e.ReadOnly, Size: int64(e.Size)})
		if err != nil {
			return fmt.Errorf("export %q: %w", e.Name, err)
		}
		files = append(files, f)
		exports = append(exports, &nbd.Export{Name: e.Name, Description: e.Description, Backend: f, ReadOnly: e.ReadOnly, PeerCIDs: e.CIDs})
		log.Info("export ready", "export", e.Name, "path", e.Path, "size", f.Size(), "read_only", e.ReadOnly, "cids", e.CIDs)
	}

	reg := prometheus.NewRegistry()
	if cfg.MetricsAddr != "" {
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		if opts.Metrics, err = nbd.NewMetrics(reg); err != nil {
			return err
		}
	}
	srv, err := nbd.NewServer(exports, opts)
	if err != nil {
		return err
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	helpers, err := kmsHelpers(ctx, cfg, reg, log)
	if err != nil {
		return err
	}
	errs := make(chan error, len(cfg.Listen)+len(helpers))
	for _, h := range helpers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := h(ctx); err != nil {
				errs <- err
				cancel()
			}
		}()
	}
	var listeners []net.Listener
	for _, s := range cfg.Listen {
		a, _ := nbdconfig.ParseListen(s) // checked by Validate
		l, err := nbdconfig.Listen(ctx, a)
		if err != nil {
			for _, l := range listeners {
				l.Close()
			}
			cancel()
			wg.Wait()
			return err
		}
		listeners = append(listeners, l)
		log.Info("listening", "addr", a.String(), "local", l.Addr().String())
	}

	for _, l := range listeners {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := srv.Serve(ctx, l); err != nil {
				errs <- err
				cancel()
			}
		}()
	}
	if cfg.MetricsAddr != "" {
		ml, err := net.Listen("tcp", cfg.MetricsAddr)
		if err != nil {
			cancel()
			wg.Wait()
			return fmt.Errorf("metrics: %w", err)
		}
		log.Info("metrics", "url", "http://"+ml.Addr().String()+"/metrics")
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go hs.Serve(ml)
		defer hs.Close()
	}

	<-ctx.Done()
	log.Info("shutting down: finishing requests in flight")
	wg.Wait()
	close(errs)
	for e := range errs {
		err = errors.Join(err, e)
	}
	if serr := srv.Sync(); serr != nil {
		err = errors.Join(err, serr)
	}
	if err == nil {
		log.Info("stopped cleanly; exports flushed")
	}
	return err
}

// kmsHelpers opens the listeners of the forwarders and the credentials
// endpoints (see packages vsockproxy and parentcreds) and returns the
// functions serving them until ctx is done.
func kmsHelpers(ctx context.Context, cfg *nbdconfig.Config, reg *prometheus.Registry, log *slog.Logger) (serve []func(context.Context) error, err error) {
	var opened []net.Listener
	defer func() {
		if err != nil {
			for _, l := range opened {
				l.Close()
			}
		}
	}()
	listen := func(a nbdconfig.Addr, what string) (net.Listener, error) {
		l, err := nbdconfig.Listen(ctx, a)
		if err != nil {
			return nil, err
		}
		opened = append(opened, l)
		log.Info("listening", "addr", a.String(), "local", l.Addr().String(), "serves", what)
		return l, nil
	}
	var metrics *vsockproxy.Metrics
	if cfg.MetricsAddr != "" && len(cfg.Forward) > 0 {
		if metrics, err = vsockproxy.NewMetrics(reg); err != nil {
			return nil, err
		}
	}
	for _, s := range cfg.Forward {
		f, _ := nbdconfig.ParseForward(s) // checked by Validate
		l, err := listen(f.Listen, "forward to "+f.Target)
		if err != nil {
			return nil, err
		}
		p := &vsockproxy.Proxy{Target: f.Target, Logger: log.With("forward", f.Target), Metrics: metrics}
		serve = append(serve, func(ctx context.Context) error { return p.Serve(ctx, l) })
	}
	if len(cfg.Credentials) == 0 {
		return serve, nil
	}
	awsCfg, err := awsconfig.LoadDefaultConfig(ctx, awsconfig.WithEC2IMDSRegion())
	if err != nil {
		return nil, fmt.Errorf("AWS configuration: %w", err)
	}
	if cfg.Region != "" {
		awsCfg.Region = cfg.Region
	}
	if awsCfg.Region == "" {
		return nil, errors.New("--credentials: no AWS region: set --region, AWS_REGION or run on EC2")
	}
	if c, err := awsCfg.Credentials.Retrieve(ctx); err != nil {
		log.Warn("no AWS credentials yet; the enclave will be told why", "err", err)
	} else {
		log.Info("AWS credentials", "source", c.Source, "access_key_id", c.AccessKeyID, "region", awsCfg.Region)
	}
	for _, s := range cfg.Credentials {
		a, _ := nbdconfig.ParseCredentials(s) // checked by Validate
		l, err := listen(a.Listen, "AWS credentials")
		if err != nil {
			return nil, err
		}
		cs := &parentcreds.Server{Credentials: awsCfg.Credentials, Region: awsCfg.Region, PeerCID: a.PeerCID, Logger: log.With("credentials", s)}
		serve = append(serve, func(ctx context.Context) error { return cs.Serve(ctx, l) })
	}
	return serve, nil
}
