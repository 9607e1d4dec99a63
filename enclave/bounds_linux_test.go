//go:build linux

package enclave

import (
	"math"
	"testing"

	"github.com/enclave-storage/enclave-storage/nbdclient"
)

// TestKernelConfigExtremes: every export CheckExport lets through gets a
// kernel configuration whose size is whole blocks of a block size the
// kernel client takes, and fits a loff_t.
func TestKernelConfigExtremes(t *testing.T) {
	for _, size := range []uint64{512, 4095 &^ 511, 4096, 4096 + 512, 32 << 20, 32<<20 + 512, 1 << 40, nbdclient.MaxExportSize,
		nbdclient.MaxExportSize - 512, 1 << 63, math.MaxUint64} {
		for _, bmin := range []uint32{0, 1, 512, 4096, 8192, math.MaxUint32} {
			exp := &nbdclient.Export{Name: "x", Size: size, BlockSize: nbdclient.BlockSize{Minimum: bmin}}
			if CheckExport(exp) != nil {
				continue
			}
			kc, err := kernelConfig(Config{}, exp)
			if err != nil {
				t.Errorf("size %d, min block %d: %v", size, bmin, err)
				continue
			}
			if kc.BlockSize != 512 && kc.BlockSize != 4096 || kc.Size%kc.BlockSize != 0 || kc.Size > math.MaxInt64 || uint64(bmin) > kc.BlockSize {
				t.Errorf("size %d, min block %d: kernel config size %d, block size %d", size, bmin, kc.Size, kc.BlockSize)
			}
		}
	}
}
