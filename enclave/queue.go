package enclave

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/enclave-storage/enclave-storage/nbdclient"
)

// QueueLimits are block-queue settings in KiB, as sysfs names them
// (/sys/block/NAME/queue/max_sectors_kb and read_ahead_kb). Zero leaves
// a setting as the kernel has it.
type QueueLimits struct {
	MaxSectorsKB uint32 // largest request the block layer builds
	ReadAheadKB  uint32 // read-ahead window of buffered reads and mmap faults
}

const (
	// maxRequestKB caps max_sectors_kb on an NBD device. The kernel's
	// default, 128 KiB, splits every 1 MiB request into eight NBD round
	// trips, and a round trip through vsock and the relay is what an
	// enclave's I/O waits on; larger requests than 1 MiB would only grow
	// the relay's copies and each request's latency.
	maxRequestKB = 1024
	// imageReadAheadKB is the read-ahead of the image (its NBD device and
	// dm-verity on it): the image is read-only, mostly executables and
	// libraries read front to back or mapped, so reading ahead in 1 MiB
	// round trips is cheap, and erofs and dm-verity read what the
	// application reads. The run volume keeps the kernel's default: its
	// mmap faults read around by read_ahead_kb too, and an application
	// with random access (a database) would pay for every wasted
	// megabyte across the NBD link.
	imageReadAheadKB = 1024
	// defaultMaxBlock is the largest request a client may send a server
	// that advertises no NBD_INFO_BLOCK_SIZE (the NBD protocol: 32 MiB).
	defaultMaxBlock = 32 << 20
)

// exportQueueLimits is what AttachExport sets on an export's device:
// requests up to maxRequestKB, never above the server's advertised
// maximum block size; read-ahead for the read-only image.
func exportQueueLimits(exp *nbdclient.Export, writable bool) QueueLimits {
	max := uint64(defaultMaxBlock)
	if m := exp.BlockSize.Maximum; m != 0 {
		max = uint64(m)
	}
	kb := min(max>>10, maxRequestKB)
	// The kernel refuses max_sectors_kb below a page; round down to 4 KiB.
	kb &^= 3
	var l QueueLimits
	if kb >= 4 {
		l.MaxSectorsKB = uint32(kb)
	}
	if !writable {
		l.ReadAheadKB = imageReadAheadKB
	}
	return l
}

// tuneQueueDir writes want into dir, a block device's queue directory in
// sysfs, and returns the values the files hold afterwards. MaxSectorsKB is
// capped at max_hw_sectors_kb. Every failure is returned, joined; callers
// treat them as warnings (older kernels, read-only sysfs).
func tuneQueueDir(dir string, want QueueLimits) (QueueLimits, error) {
	var errs []error
	var got QueueLimits
	if want.MaxSectorsKB != 0 {
		kb := want.MaxSectorsKB
		if hw, err := readKB(dir, "max_hw_sectors_kb"); err != nil {
			errs = append(errs, err)
		} else {
			kb = min(kb, hw)
		}
		errs = append(errs, writeKB(dir, "max_sectors_kb", kb))
	}
	if want.ReadAheadKB != 0 {
		errs = append(errs, writeKB(dir, "read_ahead_kb", want.ReadAheadKB))
	}
	var err error
	if got.MaxSectorsKB, err = readKB(dir, "max_sectors_kb"); err != nil {
		errs = append(errs, err)
	}
	if got.ReadAheadKB, err = readKB(dir, "read_ahead_kb"); err != nil {
		errs = append(errs, err)
	}
	return got, errors.Join(errs...)
}

// readKB reads one decimal sysfs attribute.
func readKB(dir, name string) (uint32, error) {
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return 0, fmt.Errorf("enclave: %w", err)
	}
	v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 32)
	if err != nil {
		return 0, fmt.Errorf("enclave: %s: %w", filepath.Join(dir, name), err)
	}
	return uint32(v), nil
}

// writeKB writes one decimal sysfs attribute (O_WRONLY without O_CREATE:
// sysfs attributes exist or are not supported).
func writeKB(dir, name string, v uint32) error {
	p := filepath.Join(dir, name)
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return fmt.Errorf("enclave: setting %s: %w", name, err)
	}
	_, err = f.WriteString(strconv.FormatUint(uint64(v), 10))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("enclave: writing %d to %s: %w", v, p, err)
	}
	return nil
}
