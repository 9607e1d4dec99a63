//go:build linux

package nbd

import (
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"

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

// sendRange copies [off, off+n) of f to the socket behind rc with
// sendfile(2): no copy through user space, and the file offset is not used.
func sendRange(rc syscall.RawConn, f *os.File, off, n int64) error {
	src := int(f.Fd())
	var serr error
	err := rc.Write(func(fd uintptr) bool {
		for n > 0 {
			w, err := unix.Sendfile(int(fd), src, &off, int(min(n, 1<<30)))
			n -= int64(max(w, 0))
			switch {
			case err == unix.EAGAIN:
				return false // wait until the socket is writable
			case err == unix.EINTR:
			case err != nil:
				serr = err
				return true
			case w == 0:
				serr = io.ErrUnexpectedEOF // file shorter than the export
				return true
			}
		}
		return true
	})
	if err != nil {
		return err
	}
	return serr
}

// setRcvLowat sets SO_RCVLOWAT on a socket: poll reports it readable only
// once n bytes are queued (Linux caps n at half the receive buffer).
func setRcvLowat(rc syscall.RawConn, n int) bool {
	var serr error
	err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVLOWAT, n)
	})
	return err == nil && serr == nil
}

// seekExtents emits the data and hole extents of f in [off, end), at most
// limit of them, found with lseek SEEK_DATA and SEEK_HOLE. Past the end of
// the file (ENXIO) is a hole. Filesystems without hole tracking report
// everything before EOF as data, which is correct, merely not sparse.
func seekExtents(f *os.File, off, end int64, limit int, emit func(int64, bool)) error {
	fd := int(f.Fd())
	for i := 0; off < end && i < limit; i++ {
		data, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			emit(end-off, true)
			return nil
		}
		if err != nil {
			return fmt.Errorf("nbd: SEEK_DATA at %d: %w", off, err)
		}
		if data > off {
			next := min(data, end)
			emit(next-off, true)
			off = next
			continue
		}
		hole, err := unix.Seek(fd, off, unix.SEEK_HOLE)
		if errors.Is(err, unix.ENXIO) {
			hole = end // truncated meanwhile; the next SEEK_DATA will tell
		} else if err != nil {
			return fmt.Errorf("nbd: SEEK_HOLE at %d: %w", off, err)
		}
		next := min(max(hole, off+1), end)
		emit(next-off, false)
		off = next
	}
	return nil
}
