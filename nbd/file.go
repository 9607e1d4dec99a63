package nbd

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"
)

// ErrLocked reports that another process (typically a second nbd-parent)
// holds the exclusive lock on a file we were asked to serve.
var ErrLocked = errors.New("file is locked by another process")

// SizeMismatchError reports that an existing read-write image does not have
// the size the configuration asks for. We refuse to serve it rather than
// grow or shrink it: shrinking would cut off data, and an enclave that
// formatted LUKS2+ext4 on the old size must not see the device change
// under it without an operator deciding so (grow it with truncate(1) and
// update the configuration, or fix the configuration).
type SizeMismatchError struct {
	Path       string
	Have, Want int64
}

func (e *SizeMismatchError) Error() string {
	return fmt.Sprintf("nbd: %s is %d bytes but the configuration says %d: refusing to resize an existing image", e.Path, e.Have, e.Want)
}

// Backend is the storage behind an export. Offsets and lengths passed to it
// have already been checked against Size.
type Backend interface {
	io.ReaderAt
	io.WriterAt
	// Size is the export size in bytes; it does not change while served.
	Size() int64
	// Sync makes every completed write durable (fdatasync).
	Sync() error
	// Trim discards a range; later reads of it return zeroes.
	Trim(off, length int64) error
	// Zero makes a range read as zeroes; with noHole the range stays
	// allocated (later writes to it cannot fail for lack of space).
	Zero(off, length int64, noHole bool) error
}

// FileOptions says how OpenFile opens an image.
type FileOptions struct {
	// ReadOnly opens the file O_RDONLY; the export refuses writes.
	ReadOnly bool
	// Size, for a read-write file, is the size to create it with when it
	// does not exist (sparse: nothing is allocated). An existing file of
	// another size is refused with *SizeMismatchError. Zero means the file
	// must already exist and is served at its current size.
	Size int64
}

// File is an image file opened for serving. It holds an exclusive flock
// on the file until Close so that two daemons never serve the same image.
type File struct {
	f        *os.File
	path     string
	size     int64
	readOnly bool

	// A regular file's writes are serialized here. Buffered writes to
	// one inode are serialized by the kernel anyway (ext4 and XFS take
	// the inode lock exclusively for them), but a writer that finds it
	// taken spins on the CPU while the owner runs (rwsem optimistic
	// spinning): with concurrent 1 MiB writes that burned about a tenth
	// of the server's CPU, time the connection's reader needed to
	// receive the next payloads. Waiting here parks the goroutine
	// instead. Block devices take no such lock and are not serialized.
	serial bool
	wmu    sync.Mutex

	m *mapping // for zero-copy replies of cached data; nil if unmapped
}

// OpenFile opens (and, for a read-write image with opts.Size set, creates)
// the image at path and locks it exclusively. Creation uses O_CREAT|O_EXCL
// and ftruncate, so an existing image is never truncated or recreated.
func OpenFile(path string, opts FileOptions) (*File, error) {
	if opts.Size < 0 {
		return nil, fmt.Errorf("nbd: %s: negative size %d", path, opts.Size)
	}
	flag := os.O_RDWR
	if opts.ReadOnly {
		flag = os.O_RDONLY
	}
	f, err := os.OpenFile(path, flag, 0)
	created := false
	if errors.Is(err, os.ErrNotExist) && !opts.ReadOnly && opts.Size > 0 {
		f, err = os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, os.ErrExist) {
			// Lost a race with another creator: use what it made.
			f, err = os.OpenFile(path, os.O_RDWR, 0)
		} else {
			created = err == nil
		}
	}
	if err != nil {
		return nil, fmt.Errorf("nbd: open image: %w", err)
	}
	if err := lockFile(f); err != nil {
		f.Close()
		if created {
			os.Remove(path)
		}
		return nil, fmt.Errorf("nbd: lock %s: %w", path, err)
	}
	if created {
		if err := f.Truncate(opts.Size); err != nil {
			f.Close()
			os.Remove(path)
			return nil, fmt.Errorf("nbd: size new image: %w", err)
		}
		if err := f.Sync(); err != nil {
			f.Close()
			return nil, fmt.Errorf("nbd: sync new image %s: %w", path, err)
		}
	}
	size, regular, err := fileSize(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("nbd: size of %s: %w", path, err)
	}
	if !opts.ReadOnly && opts.Size > 0 && size != opts.Size {
		f.Close()
		return nil, &SizeMismatchError{Path: path, Have: size, Want: opts.Size}
	}
	return &File{f: f, path: path, size: size, readOnly: opts.ReadOnly, serial: regular, m: newMapping(f, size)}, nil
}

// fileSize is the size of a regular file or of a block device, and
// whether it is a regular file.
func fileSize(f *os.File) (size int64, regular bool, err error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, false, err
	}
	if fi.Mode().IsRegular() {
		return fi.Size(), true, nil
	}
	// Block devices report 0 from stat; seeking to the end works for both.
	size, err = f.Seek(0, io.SeekEnd)
	return size, false, err
}

// Path is the file's path as given to OpenFile.
func (f *File) Path() string { return f.path }

// Size is the file size in bytes.
func (f *File) Size() int64 { return f.size }

// ReadOnly reports whether the file was opened read-only.
func (f *File) ReadOnly() bool { return f.readOnly }

// ReadAt reads len(p) bytes at off (pread).
func (f *File) ReadAt(p []byte, off int64) (int, error) { return f.f.ReadAt(p, off) }

// view lends [off, off+n) of the page cache, pinned until unpin, when all
// of it is cached (see mapping); nil otherwise. The server sends a
// reply's data straight from it.
func (f *File) view(off, n int64) []byte {
	if f.m == nil {
		return nil
	}
	return f.m.view(off, n)
}

// unpin releases a view.
func (f *File) unpin() { f.m.unpin() }

// sendRange writes the range to a socket without copying it through user
// space (sendfile).
func (f *File) sendRange(rc syscall.RawConn, off, n int64) error {
	if err := sendRange(rc, f.f, off, n); err != nil {
		return fmt.Errorf("nbd: sendfile from %s at %d+%d: %w", f.path, off, n, err)
	}
	return nil
}

// extents reports holes and data from off to end (SEEK_DATA/SEEK_HOLE on
// Linux; elsewhere, all data), for NBD_CMD_BLOCK_STATUS.
func (f *File) extents(off, end int64, limit int, emit func(n int64, hole bool)) error {
	return seekExtents(f.f, off, end, limit, emit)
}

// WriteAt writes p at off (pwrite).
func (f *File) WriteAt(p []byte, off int64) (int, error) {
	if f.serial {
		f.wmu.Lock()
		defer f.wmu.Unlock()
	}
	return f.f.WriteAt(p, off)
}

// tryWriteAt is WriteAt for the connection's reader (inlineWriter): it
// reports false, having written nothing, when another write holds the
// file, rather than wait for it, and for writes over inlineWriteMax to a
// block device, which takes concurrent writes that workers can overlap.
func (f *File) tryWriteAt(p []byte, off int64) (bool, error) {
	if f.serial {
		if !f.wmu.TryLock() {
			return false, nil
		}
		defer f.wmu.Unlock()
	} else if len(p) > inlineWriteMax {
		return false, nil
	}
	_, err := f.f.WriteAt(p, off)
	return true, err
}

// Sync flushes written data to stable storage. Read-only files have
// nothing to flush.
func (f *File) Sync() error {
	if f.readOnly {
		return nil
	}
	if err := datasync(f.f); err != nil {
		return fmt.Errorf("nbd: fdatasync %s: %w", f.path, err)
	}
	return nil
}

// Trim punches a hole over the range (or, where the filesystem cannot,
// zeroes it), so that trimmed blocks read back as zeroes.
func (f *File) Trim(off, length int64) error { return f.Zero(off, length, false) }

// Zero makes the range read as zeroes: a hole punch, or with noHole an
// allocated zeroed range (FALLOC_FL_ZERO_RANGE, falling back to writing
// zeroes where the filesystem lacks it).
func (f *File) Zero(off, length int64, noHole bool) error {
	if !noHole {
		if err := punchHole(f.f, off, length); err == nil {
			return nil
		}
	}
	if err := zeroRange(f.f, off, length); err == nil {
		return nil
	}
	if err := writeZeroes(f.f, off, length); err != nil {
		return fmt.Errorf("nbd: write zeroes to %s at %d+%d: %w", f.path, off, length, err)
	}
	return nil
}

// writeZeroes is the portable fallback for Zero.
func writeZeroes(f *os.File, off, length int64) error {
	zero := make([]byte, min(length, 1<<20))
	for length > 0 {
		n := min(length, int64(len(zero)))
		if _, err := f.WriteAt(zero[:n], off); err != nil {
			return err
		}
		off += n
		length -= n
	}
	return nil
}

// Close syncs a read-write file, then unmaps it (once no reply still
// being sent uses the mapping) and releases its lock and descriptor.
func (f *File) Close() error {
	serr := f.Sync()
	if f.m != nil {
		f.m.close()
	}
	cerr := f.f.Close()
	if serr != nil {
		return serr
	}
	if cerr != nil {
		return fmt.Errorf("nbd: close %s: %w", f.path, cerr)
	}
	return nil
}
