//go:build linux

package nbd

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// lockFile takes an exclusive, non-blocking flock on f.
func lockFile(f *os.File) error {
	err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
	if errors.Is(err, unix.EWOULDBLOCK) {
		return ErrLocked
	}
	return err
}

// datasync is fdatasync(2): data and the metadata needed to read it back.
func datasync(f *os.File) error {
	for {
		err := unix.Fdatasync(int(f.Fd()))
		if err != unix.EINTR {
			return err
		}
	}
}

// punchHole deallocates a range, keeping the file size.
func punchHole(f *os.File, off, length int64) error {
	return fallocate(f, unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, length)
}

// zeroRange zeroes a range and keeps it allocated.
func zeroRange(f *os.File, off, length int64) error {
	return fallocate(f, unix.FALLOC_FL_ZERO_RANGE|unix.FALLOC_FL_KEEP_SIZE, off, length)
}

func fallocate(f *os.File, mode uint32, off, length int64) error {
	for {
		err := unix.Fallocate(int(f.Fd()), mode, off, length)
		if err != unix.EINTR {
			return err
		}
	}
}

// readCached reads p at off only if the data is already in the page cache
// (preadv2 with RWF_NOWAIT); it reports false, having read nothing useful,
// when the read would have to wait for storage or is not fully cached.
func readCached(f *os.File, p []byte, off int64) bool {
	n, err := unix.Preadv2(int(f.Fd()), [][]byte{p}, off, unix.RWF_NOWAIT)
	return err == nil && n == len(p)
}
