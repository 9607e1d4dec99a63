//go:build linux

package enclave

import (
	"fmt"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// TuneQueue sets want on the block device dev (a /dev node: NBD or
// device-mapper) through its sysfs queue directory,
// /sys/dev/block/MAJOR:MINOR/queue, and returns the values in force
// afterwards. Errors are warnings: the device works with the kernel's
// defaults, only slower.
//
// Device-mapper copies max_sectors_kb from the devices under a table when
// it loads it, so set the NBD device's before creating dm devices on it;
// read_ahead_kb is each device's own.
func TuneQueue(dev string, want QueueLimits) (QueueLimits, error) {
	var st unix.Stat_t
	if err := unix.Stat(dev, &st); err != nil {
		return QueueLimits{}, fmt.Errorf("enclave: tuning %s: %w", dev, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFBLK {
		return QueueLimits{}, fmt.Errorf("enclave: tuning %s: not a block device", dev)
	}
	dir := filepath.Join("/sys/dev/block", fmt.Sprintf("%d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev)), "queue")
	return tuneQueueDir(dir, want)
}
