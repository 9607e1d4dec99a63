//go:build linux

package enclave

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/enclave-storage/enclave-storage/nbdkernel"
)

// reconnectBackoff is the pause between redial attempts for a dead link.
const reconnectBackoff = time.Second

// Reconnect serves NBD_CMD_LINK_DEAD events until ctx is done: when the
// connection of one of devs dies (the parent's nbd-parent restarted, say),
// it redials the parent, renegotiates the same export, checks its size is
// unchanged and gives the kernel the new socket (NBD_CMD_RECONFIGURE).
// Meanwhile the kernel holds I/O for up to the dead-connection timeout, so
// the filesystems above never see the outage. Attempts repeat every second
// until they succeed, the timeout has passed or ctx is done.
func Reconnect(ctx context.Context, w *nbdkernel.Watcher, nl *nbdkernel.Conn, cfg Config, devs []*Attached, log *slog.Logger) {
	byIndex := map[uint32]*Attached{}
	for _, d := range devs {
		byIndex[d.Index] = d
	}
	p, err := ParseParent(cfg.Parent)
	if err != nil {
		log.Error("reconnect disabled", "err", err)
		return
	}
	for {
		idx, err := w.Next(ctx)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			log.Error("watching NBD links; reconnection disabled", "err", err)
			return
		}
		d, ok := byIndex[idx]
		if !ok {
			continue
		}
		log.Warn("NBD link dead, reconnecting", "device", d.Path, "export", d.Export.Name)
		kc, _ := kernelConfig(cfg, d.Export)
		deadline := time.Now().Add(kc.DeadConnTimeout)
		for attempt := 1; ; attempt++ {
			err := reattach(ctx, nl, p, d, kc)
			if err == nil {
				log.Info("NBD link restored", "device", d.Path, "attempt", attempt)
				break
			}
			log.Warn("reconnect failed", "device", d.Path, "attempt", attempt, "err", err)
			if time.Now().After(deadline) {
				log.Error("giving up reconnecting; I/O on the device now fails", "device", d.Path)
				break
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(reconnectBackoff):
			}
		}
	}
}

// reattach dials and negotiates d's export again and hands the socket to
// the kernel in place of the dead one.
func reattach(ctx context.Context, nl *nbdkernel.Conn, p Parent, d *Attached, kc nbdkernel.Config) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, exp, err := negotiate(ctx, p, d.Export.Name)
	if err != nil {
		return err
	}
	if exp.Size != d.Export.Size || exp.ReadOnly() != d.Export.ReadOnly() {
		conn.Close()
		return fmt.Errorf("export %q changed: size %d read-only %v, was %d %v",
			exp.Name, exp.Size, exp.ReadOnly(), d.Export.Size, d.Export.ReadOnly())
	}
	relay, err := handOver(conn, func(fd int) error {
		return nl.Reconfigure(ctx, d.Index, nbdkernel.Config{
			Sockets:         []int{fd},
			Timeout:         kc.Timeout,
			DeadConnTimeout: kc.DeadConnTimeout,
			BackendID:       kc.BackendID,
		})
	})
	if relay == nil {
		conn.Close()
	}
	if err != nil {
		return err
	}
	d.setRelay(relay)
	return nil
}
