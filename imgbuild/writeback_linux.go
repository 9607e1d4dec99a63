//go:build linux

package imgbuild

import (
	"os"

	"golang.org/x/sys/unix"
)

// startWriteback asks the kernel to start writing [off, off+n) of f to
// disk, without waiting (sync_file_range SYNC_FILE_RANGE_WRITE), so that
// the fsync ending the build waits for the image's last megabytes rather
// than for all of it. Advice only: errors are ignored, and a range not
// written yet is skipped by the kernel.
func startWriteback(f *os.File, off, n int64) {
	_ = unix.SyncFileRange(int(f.Fd()), off, n, unix.SYNC_FILE_RANGE_WRITE)
}
