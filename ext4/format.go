package ext4

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sync/atomic"
	"time"

	"github.com/diskfs/go-diskfs/backend"
	dext4 "github.com/diskfs/go-diskfs/filesystem/ext4"
	"github.com/google/uuid"
)

// BlockSize is the filesystem block size Format uses.
const BlockSize = 4096

// MinSize is the smallest device Format accepts: room for the 4 MiB
// journal, the metadata of one group and some data.
const MinSize = 8 << 20

// MaxLabel is the longest volume label ext4 stores (s_volume_name).
const MaxLabel = 16

// Errors callers may branch on.
var (
	// ErrTooSmall: the device is smaller than MinSize.
	ErrTooSmall = errors.New("ext4: device too small")
	// ErrLabel: the label does not fit s_volume_name.
	ErrLabel = errors.New("ext4: label longer than 16 bytes")
)

// Device is what Format writes to: a block device or a file. Format reads
// back only what it wrote itself.
type Device interface {
	io.ReaderAt
	io.WriterAt
}

// Options tunes Format; the zero value (or nil) is the default.
type Options struct {
	// Label is the volume label (at most MaxLabel bytes).
	Label string
	// UUID is the filesystem UUID; zero means random.
	UUID [16]byte
}

// Stats describes a format.
type Stats struct {
	Size         int64         // filesystem bytes: the size rounded down to BlockSize
	Blocks       uint64        // Size / BlockSize
	BytesWritten int64         // bytes written to the device
	Duration     time.Duration // wall time of Format
}

// Format creates an empty ext4 filesystem filling the first size bytes of
// dev (rounded down to BlockSize); see the package documentation for the
// layout.
//
// The first block, which holds the primary superblock and its magic, is
// written last, after a Sync when dev has one (an *os.File does): a format
// cut short (power loss, a cancelled ctx, a write error) leaves a device
// without an ext4 superblock, never one the kernel would mount half made.
// dev is not synced after that last write: the caller owns it. ctx is
// checked before every write.
func Format(ctx context.Context, dev Device, size int64, opts *Options) (Stats, error) {
	start := time.Now()
	if opts == nil {
		opts = &Options{}
	}
	if len(opts.Label) > MaxLabel {
		return Stats{}, fmt.Errorf("%w: %q", ErrLabel, opts.Label)
	}
	size -= size % BlockSize
	if size < MinSize {
		return Stats{}, fmt.Errorf("%w: %d bytes, need at least %d", ErrTooSmall, size, MinSize)
	}
	id := uuid.UUID(opts.UUID)
	if id == (uuid.UUID{}) {
		var err error
		if id, err = uuid.NewRandom(); err != nil {
			return Stats{}, fmt.Errorf("ext4: uuid: %w", err)
		}
	}
	b := &storage{ctx: ctx, dev: dev, size: size}
	p := &dext4.Params{
		UUID:            &id,
		SectorsPerBlock: BlockSize / 512,
		InodeRatio:      16384,
		VolumeName:      opts.Label,
		Checksum:        true,
		Features: []dext4.FeatureOpt{
			dext4.WithFeatureHasJournal(true),
			dext4.WithFeatureExtendedAttributes(true),
			dext4.WithFeatureDirectoryIndices(true),
			dext4.WithFeatureDirectoryEntriesRecordFileType(true),
			dext4.WithFeatureExtents(true),
			dext4.WithFeatureFS64Bit(true),
			dext4.WithFeatureFlexBlockGroups(true),
			dext4.WithFeatureSparseSuperblock(true),
			dext4.WithFeatureLargeFile(true),
			dext4.WithFeatureHugeFile(true),
			dext4.WithFeatureLargeSubdirectoryCount(true),
			dext4.WithFeatureLargeInodes(true),
			dext4.WithFeatureMetadataChecksums(true),
			dext4.WithFeatureReservedGDTBlocksForExpansion(false),
		},
	}
	fsys, err := dext4.Create(b, size, 0, 512, p)
	if err == nil {
		err = mkLostFound(fsys)
	}
	if err == nil {
		err = disableMountCount(b, uint64(size/BlockSize))
	}
	if err == nil {
		err = b.flushHead()
	}
	st := Stats{Size: size, Blocks: uint64(size / BlockSize), BytesWritten: b.written.Load(), Duration: time.Since(start)}
	if err != nil {
		if ctx.Err() != nil {
			return st, fmt.Errorf("ext4: format: %w", ctx.Err())
		}
		return st, fmt.Errorf("ext4: format: %w", err)
	}
	return st, nil
}

// mkLostFound creates /lost+found as mke2fs does (inode 11, mode 0700), for
// e2fsck to reconnect orphaned inodes into.
func mkLostFound(fsys *dext4.FileSystem) error {
	if err := fsys.Mkdir("lost+found"); err != nil {
		return fmt.Errorf("lost+found: %w", err)
	}
	if err := fsys.Chmod("lost+found", os.ModeDir|0o700); err != nil {
		return fmt.Errorf("lost+found: %w", err)
	}
	return nil
}

// storage adapts a Device to the library's backend.Storage: positional
// reads and writes within size, each write checking ctx and counted. The
// library uses nothing else; the streaming methods fail. The first block
// is kept in head, read from dev on first use, and written by flushHead.
type storage struct {
	ctx     context.Context
	dev     Device
	size    int64
	head    []byte
	written atomic.Int64
}

// loadHead reads the first block into head, once.
func (s *storage) loadHead() error {
	if s.head != nil {
		return nil
	}
	head := make([]byte, BlockSize)
	if _, err := s.dev.ReadAt(head, 0); err != nil {
		return err
	}
	s.head = head
	return nil
}

// flushHead syncs dev if it can, then writes the first block.
func (s *storage) flushHead() error {
	if s.head == nil {
		return nil
	}
	if err := s.ctx.Err(); err != nil {
		return err
	}
	if d, ok := s.dev.(interface{ Sync() error }); ok {
		if err := d.Sync(); err != nil {
			return err
		}
	}
	n, err := s.dev.WriteAt(s.head, 0)
	s.written.Add(int64(n))
	return err
}

var errUnsupported = errors.New("ext4: not supported by the device adapter")

func (s *storage) ReadAt(p []byte, off int64) (int, error) { return s.access(p, off, false) }

func (s *storage) WriteAt(p []byte, off int64) (int, error) {
	if err := s.ctx.Err(); err != nil {
		return 0, err
	}
	return s.access(p, off, true)
}

// access reads or writes p at off: the part in the first block from or
// into head, the rest on dev.
func (s *storage) access(p []byte, off int64, write bool) (int, error) {
	if off < 0 || off+int64(len(p)) > s.size {
		return 0, fmt.Errorf("ext4: access to %d bytes at %d outside the %d-byte filesystem", len(p), off, s.size)
	}
	var n int
	if off < BlockSize {
		if err := s.loadHead(); err != nil {
			return 0, err
		}
		if write {
			n = copy(s.head[off:], p)
		} else {
			n = copy(p, s.head[off:])
		}
		if n == len(p) {
			return n, nil
		}
	}
	if !write {
		m, err := s.dev.ReadAt(p[n:], off+int64(n))
		return n + m, err
	}
	m, err := s.dev.WriteAt(p[n:], off+int64(n))
	s.written.Add(int64(m))
	return n + m, err
}

func (s *storage) Stat() (fs.FileInfo, error)              { return nil, errUnsupported }
func (s *storage) Read([]byte) (int, error)                { return 0, errUnsupported }
func (s *storage) Seek(int64, int) (int64, error)          { return 0, errUnsupported }
func (s *storage) Close() error                            { return nil }
func (s *storage) Sys() (*os.File, error)                  { return nil, errUnsupported }
func (s *storage) Path() string                            { return "" }
func (s *storage) Writable() (backend.WritableFile, error) { return s, nil }
