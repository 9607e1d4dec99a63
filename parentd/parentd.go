package parentd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
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

// Options tune Start; the zero value is usable.
type Options struct {
	// NBD are the server's options; Start sets Metrics when the
	// configuration has a metrics address, and Logger when nil.
	NBD nbd.Options
	// Logger receives one line per step; nil discards them.
	Logger *slog.Logger
	// Registry collects the metrics served on the configuration's
	// metrics address; nil means a new one.
	Registry *prometheus.Registry
	// Handlers are served next to /metrics, by path.
	Handlers map[string]http.Handler
	// Listen opens a listener; nil means nbdconfig.Listen. Tests use it
	// to stand a TCP listener in for vsock.
	Listen func(context.Context, nbdconfig.Addr) (net.Listener, error)
}

// A Daemon serves one configuration until its context is done.
type Daemon struct {
	srv         *nbd.Server
	files       []*nbd.File
	cancel      context.CancelFunc
	wg          sync.WaitGroup
	errs        chan error
	done        chan struct{}
	http        *http.Server
	metricsAddr net.Addr
	log         *slog.Logger
}

// Start opens the exports (creating and locking read-write files as
// nbd.OpenFile does), the listeners and the metrics endpoint, and serves
// them until ctx is done or one of them fails; Wait then returns.
func Start(ctx context.Context, cfg *nbdconfig.Config, o Options) (_ *Daemon, err error) {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if o.NBD.Logger == nil {
		o.NBD.Logger = log
	}
	listen := o.Listen
	if listen == nil {
		listen = nbdconfig.Listen
	}
	reg := o.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	ctx, cancel := context.WithCancel(ctx)
	d := &Daemon{cancel: cancel, done: make(chan struct{}), log: log}
	var listeners []net.Listener
	defer func() {
		if err != nil {
			cancel()
			for _, l := range listeners {
				l.Close()
			}
			d.wg.Wait()
			d.closeFiles()
		}
	}()

	var exports []*nbd.Export
	for _, e := range cfg.Exports {
		f, err := nbd.OpenFile(e.Path, nbd.FileOptions{ReadOnly: e.ReadOnly, Size: int64(e.Size)})
		if err != nil {
			return nil, fmt.Errorf("export %q: %w", e.Name, err)
		}
		d.files = append(d.files, f)
		exports = append(exports, &nbd.Export{Name: e.Name, Description: e.Description, Backend: f, ReadOnly: e.ReadOnly, PeerCIDs: e.CIDs})
		log.Info("export ready", "export", e.Name, "path", e.Path, "size", f.Size(), "read_only", e.ReadOnly, "cids", e.CIDs)
	}
	if cfg.MetricsAddr != "" {
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		if o.NBD.Metrics, err = nbd.NewMetrics(reg); err != nil {
			return nil, err
		}
	}
	if d.srv, err = nbd.NewServer(exports, o.NBD); err != nil {
		return nil, err
	}

	helpers, err := kmsHelpers(ctx, cfg, reg, listen, log)
	if err != nil {
		return nil, err
	}
	d.errs = make(chan error, len(cfg.Listen)+len(helpers))
	for _, h := range helpers {
		d.wg.Go(func() {
			if err := h(ctx); err != nil {
				d.errs <- err
				cancel()
			}
		})
	}
	for _, s := range cfg.Listen {
		a, err := nbdconfig.ParseListen(s)
		if err != nil {
			return nil, err
		}
		l, err := listen(ctx, a)
		if err != nil {
			return nil, err
		}
		listeners = append(listeners, l)
		log.Info("listening", "addr", a.String(), "local", l.Addr().String())
	}
	if cfg.MetricsAddr != "" {
		ml, err := net.Listen("tcp", cfg.MetricsAddr)
		if err != nil {
			return nil, fmt.Errorf("metrics: %w", err)
		}
		d.metricsAddr = ml.Addr()
		log.Info("metrics", "url", "http://"+ml.Addr().String()+"/metrics")
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		for p, h := range o.Handlers {
			mux.Handle(p, h)
		}
		d.http = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go d.http.Serve(ml)
	}
	for _, l := range listeners {
		d.wg.Go(func() {
			if err := d.srv.Serve(ctx, l); err != nil {
				d.errs <- err
				cancel()
			}
		})
	}
	go func() {
		<-ctx.Done()
		close(d.done)
	}()
	return d, nil
}

// MetricsAddr is the metrics endpoint's address; nil without one.
func (d *Daemon) MetricsAddr() net.Addr { return d.metricsAddr }

// Done is closed when serving stops: the context given to Start is done,
// or a listener or helper failed (Wait says which).
func (d *Daemon) Done() <-chan struct{} { return d.done }

// Wait waits until serving stops, lets the requests in flight finish,
// flushes the exports, closes the files and the metrics endpoint, and
// returns the first failure, if any.
func (d *Daemon) Wait() (err error) {
	<-d.done
	d.log.Info("shutting down: finishing requests in flight")
	d.wg.Wait()
	close(d.errs)
	for e := range d.errs {
		err = errors.Join(err, e)
	}
	if serr := d.srv.Sync(); serr != nil {
		err = errors.Join(err, serr)
	}
	if d.http != nil {
		d.http.Close()
	}
	if cerr := d.closeFiles(); cerr != nil {
		err = errors.Join(err, cerr)
	}
	if err == nil {
		d.log.Info("stopped cleanly; exports flushed")
	}
	d.cancel()
	return err
}

func (d *Daemon) closeFiles() (err error) {
	for _, f := range d.files {
		if cerr := f.Close(); cerr != nil {
			err = errors.Join(err, cerr)
		}
	}
	d.files = nil
	return err
}

// kmsHelpers opens the listeners of the forwarders and the credentials
// endpoints (see packages vsockproxy and parentcreds) and returns the
// functions serving them until ctx is done.
func kmsHelpers(ctx context.Context, cfg *nbdconfig.Config, reg *prometheus.Registry, listenFn func(context.Context, nbdconfig.Addr) (net.Listener, error), log *slog.Logger) (serve []func(context.Context) error, err error) {
	var opened []net.Listener
	defer func() {
		if err != nil {
			for _, l := range opened {
				l.Close()
			}
		}
	}()
	listen := func(a nbdconfig.Addr, what string) (net.Listener, error) {
		l, err := listenFn(ctx, a)
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
		f, err := nbdconfig.ParseForward(s)
		if err != nil {
			return nil, err
		}
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
		a, err := nbdconfig.ParseCredentials(s)
		if err != nil {
			return nil, err
		}
		l, err := listen(a.Listen, "AWS credentials")
		if err != nil {
			return nil, err
		}
		cs := &parentcreds.Server{Credentials: awsCfg.Credentials, Region: awsCfg.Region, PeerCID: a.PeerCID, Logger: log.With("credentials", s)}
		serve = append(serve, func(ctx context.Context) error { return cs.Serve(ctx, l) })
	}
	return serve, nil
}
