//go:build linux

package enclave

import (
	"context"
	"log/slog"
	"net"
	"time"

	"github.com/enclave-storage/enclave-storage/heartbeat"
)

// Heartbeat tells nitro-cli that the enclave has booted (package
// heartbeat): it connects to cfg.Heartbeat, writes 0xB7 and requires the
// echo within cfg.HeartbeatTimeout. The agent calls it as PID 1 only,
// before attaching the NBD exports, as the reference init calls
// enclave_ready before it starts the application; nbd-enclave run as an
// ordinary process (tests, a shell) sends none. It logs the outcome either
// way; an error means nitro-cli will stop the enclave, and the caller
// should give up.
func Heartbeat(ctx context.Context, cfg Config, log *slog.Logger) error {
	cfg = cfg.Defaults()
	if cfg.Heartbeat == HeartbeatOff {
		log.Info("heartbeat disabled by the configuration")
		return nil
	}
	p, err := ParseParent(cfg.Heartbeat)
	if err != nil {
		return err
	}
	t0 := time.Now()
	err = heartbeat.Send(ctx, func(ctx context.Context) (net.Conn, error) { return dialParent(ctx, p) },
		time.Duration(cfg.HeartbeatTimeout))
	if err != nil {
		log.Error("heartbeat failed", "addr", cfg.Heartbeat, "err", err)
		return err
	}
	log.Info("heartbeat acknowledged", "addr", cfg.Heartbeat, "elapsed", time.Since(t0).Round(time.Millisecond))
	return nil
}
