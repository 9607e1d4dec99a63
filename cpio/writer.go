package cpio

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"
)

// Magic is the newc header magic.
const Magic = "070701"

// HeaderSize is the size of a newc header before its name.
const HeaderSize = 110

// Trailer is the name of the entry that ends an archive.
const Trailer = "TRAILER!!!"

// Unix file type bits as cpio stores them in the mode field.
const (
	typeMask = 0o170000
	typeFIFO = 0o010000
	typeChar = 0o020000
	typeDir  = 0o040000
	typeBlk  = 0o060000
	typeReg  = 0o100000
	typeLnk  = 0o120000
	typeSock = 0o140000
)

// Header describes one archive entry. Size is the data length for regular
// files and the target length for symlinks; Writer fills it for symlinks.
type Header struct {
	Name     string      // relative path, "/" separated
	Mode     fs.FileMode // type and permission bits (fs.ModeDir, fs.ModeSymlink, fs.ModeDevice...)
	UID, GID uint32
	NLink    uint32 // 0 means 2 for directories, 1 otherwise
	ModTime  int64  // seconds since the Unix epoch
	Inode    uint32
	Size     int64  // bytes of data that follow (regular files)
	Linkname string // symlink target
	// RdevMajor and RdevMinor identify the device of a device node.
	RdevMajor, RdevMinor uint32
}

// Errors returned by Writer.
var (
	// ErrWriteTooLong means more data was written than the header's Size.
	ErrWriteTooLong = errors.New("cpio: write too long")
	// ErrShortWrite means the previous entry got fewer bytes than its Size.
	ErrShortWrite = errors.New("cpio: entry data shorter than header size")
	// ErrInvalidHeader means a header cannot be encoded.
	ErrInvalidHeader = errors.New("cpio: invalid header")
	// ErrClosed means the Writer was already closed.
	ErrClosed = errors.New("cpio: writer closed")
)

// Writer encodes a newc archive to an io.Writer. Call WriteHeader for each
// entry, then Write its data (regular files only), and Close to append the
// trailer. Writer does not sort or deduplicate; see Archive for that.
type Writer struct {
	w      io.Writer
	n      int64 // bytes written to w
	remain int64 // data still owed for the current entry
	pad    int   // padding owed after the current entry's data
	closed bool
	err    error
}

// NewWriter returns a Writer that writes to w.
func NewWriter(w io.Writer) *Writer { return &Writer{w: w} }

// mode converts an fs.FileMode into cpio's st_mode encoding.
func mode(m fs.FileMode) (uint32, error) {
	bits := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		bits |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		bits |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		bits |= 0o1000
	}
	switch {
	case m&fs.ModeDir != 0:
		bits |= typeDir
	case m&fs.ModeSymlink != 0:
		bits |= typeLnk
	case m&fs.ModeNamedPipe != 0:
		bits |= typeFIFO
	case m&fs.ModeSocket != 0:
		bits |= typeSock
	case m&fs.ModeDevice != 0 && m&fs.ModeCharDevice != 0:
		bits |= typeChar
	case m&fs.ModeDevice != 0:
		bits |= typeBlk
	case m&fs.ModeType == 0:
		bits |= typeReg
	default:
		return 0, fmt.Errorf("%w: unsupported file type %v", ErrInvalidHeader, m.Type())
	}
	return bits, nil
}

// WriteHeader finishes the previous entry and writes h. For symlinks the
// target is written as the entry's data at once and h.Size is ignored.
func (w *Writer) WriteHeader(h *Header) error {
	if err := w.finish(); err != nil {
		return err
	}
	if h.Name == "" || strings.IndexByte(h.Name, 0) >= 0 {
		return fmt.Errorf("%w: bad name %q", ErrInvalidHeader, h.Name)
	}
	m, err := mode(h.Mode)
	if err != nil {
		return fmt.Errorf("%s: %w", h.Name, err)
	}
	size := h.Size
	var body []byte
	switch m & typeMask {
	case typeLnk:
		if h.Linkname == "" {
			return fmt.Errorf("%w: symlink %q has no target", ErrInvalidHeader, h.Name)
		}
		body = []byte(h.Linkname)
		size = int64(len(body))
	case typeReg:
	default:
		if size != 0 {
			return fmt.Errorf("%w: %q is not a regular file but has size %d", ErrInvalidHeader, h.Name, size)
		}
	}
	if size < 0 || size > 0xffffffff {
		return fmt.Errorf("%w: %q size %d does not fit newc's 32 bits", ErrInvalidHeader, h.Name, size)
	}
	if h.ModTime < 0 || h.ModTime > 0xffffffff {
		return fmt.Errorf("%w: %q mtime %d does not fit newc's 32 bits", ErrInvalidHeader, h.Name, h.ModTime)
	}
	nlink := h.NLink
	if nlink == 0 {
		nlink = 1
		if m&typeMask == typeDir {
			nlink = 2
		}
	}
	if err := w.writeRaw(h.Name, h.Inode, m, h.UID, h.GID, nlink, uint32(h.ModTime), uint32(size), h.RdevMajor, h.RdevMinor); err != nil {
		return err
	}
	w.remain = size
	w.pad = int((4 - size%4) % 4)
	if body != nil {
		if _, err := w.Write(body); err != nil {
			return err
		}
	}
	return nil
}

// writeRaw writes a header and its padded name.
func (w *Writer) writeRaw(name string, ino, mode, uid, gid, nlink, mtime, size, rmaj, rmin uint32) error {
	if w.closed {
		return ErrClosed
	}
	if w.err != nil {
		return w.err
	}
	namesize := len(name) + 1
	buf := make([]byte, 0, HeaderSize+namesize+3)
	buf = append(buf, Magic...)
	for _, v := range [...]uint32{ino, mode, uid, gid, nlink, mtime, size, 0, 0, rmaj, rmin, uint32(namesize), 0} {
		buf = fmt.Appendf(buf, "%08x", v)
	}
	buf = append(buf, name...)
	buf = append(buf, 0)
	for len(buf)%4 != 0 {
		buf = append(buf, 0)
	}
	return w.emit(buf)
}

func (w *Writer) emit(b []byte) error {
	n, err := w.w.Write(b)
	w.n += int64(n)
	if err != nil {
		w.err = fmt.Errorf("cpio: %w", err)
		return w.err
	}
	return nil
}

// Write writes data for the current entry; it fails with ErrWriteTooLong
// past the header's Size.
func (w *Writer) Write(p []byte) (int, error) {
	if w.closed {
		return 0, ErrClosed
	}
	if w.err != nil {
		return 0, w.err
	}
	if int64(len(p)) > w.remain {
		return 0, ErrWriteTooLong
	}
	n, err := w.w.Write(p)
	w.n += int64(n)
	w.remain -= int64(n)
	if err != nil {
		w.err = fmt.Errorf("cpio: %w", err)
		return n, w.err
	}
	return n, nil
}

// finish checks the current entry got all its data and pads it.
func (w *Writer) finish() error {
	if w.err != nil {
		return w.err
	}
	if w.remain != 0 {
		return fmt.Errorf("%w: %d bytes missing", ErrShortWrite, w.remain)
	}
	if w.pad > 0 {
		if err := w.emit(make([]byte, w.pad)); err != nil {
			return err
		}
		w.pad = 0
	}
	return nil
}

// Close finishes the last entry and writes the trailer. It does not close
// the underlying writer.
func (w *Writer) Close() error {
	if w.closed {
		return nil
	}
	if err := w.finish(); err != nil {
		return err
	}
	if err := w.writeRaw(Trailer, 0, 0, 0, 0, 1, 0, 0, 0, 0); err != nil {
		return err
	}
	w.closed = true
	return nil
}

// Len returns the number of bytes written to the underlying writer so far.
func (w *Writer) Len() int64 { return w.n }
