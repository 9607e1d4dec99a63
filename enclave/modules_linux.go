//go:build linux

package enclave

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/enclave-storage/enclave-storage/kmod"
)

// LoadModules loads the kernel modules imgbuild --kernel-modules put in
// the ramdisk (kmod.OrderPath under root, "/" as PID 1), in order, before
// anything needs NBD, vsock, device-mapper or the filesystems. A ramdisk
// without the order file (a kernel with everything built in) loads
// nothing. It logs one line saying what it did.
func LoadModules(ctx context.Context, root string, log *slog.Logger) error {
	start := time.Now()
	loaded, err := kmod.Load(ctx, root)
	if err != nil {
		return fmt.Errorf("enclave: kernel modules: %w", err)
	}
	if len(loaded) > 0 {
		log.Info("kernel modules loaded", "count", len(loaded), "modules", loaded, "elapsed", time.Since(start).Round(time.Millisecond))
	}
	return nil
}
