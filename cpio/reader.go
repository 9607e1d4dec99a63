package cpio

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strconv"
)

// MaxNameSize bounds an entry's name, NUL included (the kernel's
// PATH_MAX).
const MaxNameSize = 4096

// ErrFormat means the input is not a newc archive the kernel would
// unpack: a bad magic (perhaps a compressed ramdisk), a malformed header
// or a truncated entry.
var ErrFormat = errors.New("cpio: not a newc archive")

// Reader decodes newc archives ("070701", and "070702" whose checksum it
// does not verify) from an io.Reader, one entry at a time, like
// archive/tar: Next returns the next header, Read its data. As the
// kernel's initramfs unpacker does, it reads concatenated archives as
// one: trailer entries and the NUL padding after them are skipped, and
// Next returns io.EOF only at the end of the input. Names are bounded by
// MaxNameSize; data is streamed, never buffered whole.
type Reader struct {
	r      *bufio.Reader
	off    int64 // bytes consumed from r
	remain int64 // data left in the current entry
	pad    int64 // padding after it
	err    error
}

// NewReader returns a Reader reading from r.
func NewReader(r io.Reader) *Reader { return &Reader{r: bufio.NewReader(r)} }

func (r *Reader) discard(n int64) error {
	m, err := r.r.Discard(int(n))
	r.off += int64(m)
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return err
}

// Next skips the rest of the current entry and returns the next header.
func (r *Reader) Next() (*Header, error) {
	if r.err != nil {
		return nil, r.err
	}
	h, err := r.next()
	if err != nil {
		if err != io.EOF && !errors.Is(err, ErrFormat) {
			err = fmt.Errorf("%w: at offset %d: %w", ErrFormat, r.off, err)
		}
		r.err = err
	}
	return h, err
}

func (r *Reader) next() (*Header, error) {
	if err := r.discard(r.remain + r.pad); err != nil {
		return nil, err
	}
	r.remain, r.pad = 0, 0
	for {
		// Between archives: skip NULs, as the kernel does, to the next
		// magic or the end.
		for {
			b, err := r.r.Peek(1)
			if err == io.EOF {
				return nil, io.EOF
			}
			if err != nil {
				return nil, err
			}
			if b[0] != 0 {
				break
			}
			if err := r.discard(1); err != nil {
				return nil, err
			}
		}
		if r.off%4 != 0 {
			return nil, fmt.Errorf("%w: header at offset %d is not 4-byte aligned", ErrFormat, r.off)
		}
		var raw [HeaderSize]byte
		n, err := io.ReadFull(r.r, raw[:])
		r.off += int64(n)
		if err != nil {
			return nil, io.ErrUnexpectedEOF
		}
		if m := string(raw[:6]); m != Magic && m != "070702" {
			return nil, fmt.Errorf("%w: bad magic %q at offset %d (a compressed ramdisk?)", ErrFormat, m, r.off-HeaderSize)
		}
		var f [13]uint32
		for i := range f {
			v, err := strconv.ParseUint(string(raw[6+8*i:14+8*i]), 16, 32)
			if err != nil {
				return nil, fmt.Errorf("%w: bad header field %d at offset %d", ErrFormat, i, r.off-HeaderSize)
			}
			f[i] = uint32(v)
		}
		ino, mode, uid, gid, nlink, mtime, size := f[0], f[1], f[2], f[3], f[4], f[5], f[6]
		rmaj, rmin, namesize := f[9], f[10], f[11]
		if namesize < 2 || namesize > MaxNameSize {
			return nil, fmt.Errorf("%w: name size %d at offset %d", ErrFormat, namesize, r.off-HeaderSize)
		}
		name := make([]byte, namesize)
		n, err = io.ReadFull(r.r, name)
		r.off += int64(n)
		if err != nil {
			return nil, io.ErrUnexpectedEOF
		}
		if name[namesize-1] != 0 {
			return nil, fmt.Errorf("%w: name at offset %d is not NUL terminated", ErrFormat, r.off-int64(namesize))
		}
		if err := r.discard((4 - r.off%4) % 4); err != nil {
			return nil, err
		}
		h := &Header{
			Name: string(name[:namesize-1]), UID: uid, GID: gid, NLink: nlink,
			ModTime: int64(mtime), Inode: ino, Size: int64(size), RdevMajor: rmaj, RdevMinor: rmin,
		}
		h.Mode, err = fileMode(mode)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", h.Name, err)
		}
		r.remain, r.pad = int64(size), int64((4-size%4)%4)
		if h.Name == Trailer {
			if err := r.discard(r.remain + r.pad); err != nil {
				return nil, err
			}
			r.remain, r.pad = 0, 0
			continue
		}
		if h.Mode&fs.ModeSymlink != 0 {
			if size == 0 || size > MaxNameSize {
				return nil, fmt.Errorf("%w: symlink %q target size %d", ErrFormat, h.Name, size)
			}
			target := make([]byte, size)
			if _, err := io.ReadFull(r, target); err != nil {
				return nil, fmt.Errorf("%w: symlink %q target: %w", ErrFormat, h.Name, err)
			}
			h.Linkname = string(target)
		}
		return h, nil
	}
}

// Read reads the current entry's data.
func (r *Reader) Read(p []byte) (int, error) {
	if r.remain == 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > r.remain {
		p = p[:r.remain]
	}
	n, err := r.r.Read(p)
	r.off += int64(n)
	r.remain -= int64(n)
	if err == io.EOF && r.remain > 0 {
		err = fmt.Errorf("%w: %w in entry data", ErrFormat, io.ErrUnexpectedEOF)
	}
	if err == io.EOF {
		err = nil
	}
	return n, err
}

// fileMode converts cpio's st_mode encoding into an fs.FileMode, the
// inverse of mode.
func fileMode(m uint32) (fs.FileMode, error) {
	fm := fs.FileMode(m & 0o777)
	if m&0o4000 != 0 {
		fm |= fs.ModeSetuid
	}
	if m&0o2000 != 0 {
		fm |= fs.ModeSetgid
	}
	if m&0o1000 != 0 {
		fm |= fs.ModeSticky
	}
	switch m & typeMask {
	case typeReg:
	case typeDir:
		fm |= fs.ModeDir
	case typeLnk:
		fm |= fs.ModeSymlink
	case typeFIFO:
		fm |= fs.ModeNamedPipe
	case typeSock:
		fm |= fs.ModeSocket
	case typeChar:
		fm |= fs.ModeDevice | fs.ModeCharDevice
	case typeBlk:
		fm |= fs.ModeDevice
	default:
		if m != 0 { // the trailer's mode is 0
			return 0, fmt.Errorf("%w: unknown file type %#o", ErrFormat, m&typeMask)
		}
	}
	return fm, nil
}
