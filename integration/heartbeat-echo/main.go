//go:build linux

// Command heartbeat-echo plays nitro-cli's part of the enclave boot
// heartbeat (package heartbeat) for the integration tests, which run the
// parent side in the same VM as the enclave over the vsock loopback: it
// listens on a vsock port, and for each connection reads one byte and
// echoes it when it is 0xB7, logging each heartbeat. Test-only; on a real
// parent instance nitro-cli does this.
//
// Usage:
//
//	heartbeat-echo [--port 9000]
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/mdlayher/vsock"

	"github.com/enclave-storage/enclave-storage/heartbeat"
)

func main() {
	fs := flag.NewFlagSet("heartbeat-echo", flag.ContinueOnError)
	port := fs.Uint("port", heartbeat.DefaultPort, "vsock port to listen on (any CID)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: heartbeat-echo [--port %d]\n\nEchoes the enclave boot heartbeat (0xB7) as nitro-cli does; test-only.\n\nFlags:\n", heartbeat.DefaultPort)
		fs.PrintDefaults()
	}
	if err := fs.Parse(os.Args[1:]); err != nil {
		if err == flag.ErrHelp {
			os.Exit(0)
		}
		os.Exit(2)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("cmd", "heartbeat-echo")
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	l, err := vsock.Listen(uint32(*port), nil)
	if err != nil {
		log.Error("listen", "port", *port, "err", err)
		os.Exit(1)
	}
	context.AfterFunc(ctx, func() { l.Close() })
	log.Info("listening", "port", *port)
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() == nil {
				log.Error("accept", "err", err)
				os.Exit(1)
			}
			return
		}
		go func() {
			remote := c.RemoteAddr().String()
			if err := heartbeat.Echo(ctx, c); err != nil {
				log.Error("heartbeat refused", "remote", remote, "err", err)
				return
			}
			log.Info("heartbeat received and echoed", "remote", remote)
		}()
	}
}
