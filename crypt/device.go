package crypt

import (
	"io"
	"io/fs"
)

// Device is a block device or file holding a LUKS2 header: *os.File, or any
// io.ReaderAt + io.WriterAt (tests use plain files). Open needs only an
// io.ReaderAt.
type Device interface {
	io.ReaderAt
	io.WriterAt
}

// deviceSize reports the size of r when it can tell: a Size() method
// (*io.SectionReader, *bytes.Reader), else Seek to the end (block devices
// report size 0 in Stat), else Stat.
func deviceSize(r any) (int64, bool) {
	if s, ok := r.(interface{ Size() int64 }); ok {
		return s.Size(), true
	}
	if s, ok := r.(io.Seeker); ok {
		cur, err := s.Seek(0, io.SeekCurrent)
		if err == nil {
			end, err := s.Seek(0, io.SeekEnd)
			s.Seek(cur, io.SeekStart)
			if err == nil {
				return end, true
			}
		}
	}
	if s, ok := r.(interface{ Stat() (fs.FileInfo, error) }); ok {
		if fi, err := s.Stat(); err == nil && fi.Mode().IsRegular() {
			return fi.Size(), true
		}
	}
	return 0, false
}

// syncDevice flushes dev when it can (an *os.File).
func syncDevice(dev any) error {
	if s, ok := dev.(interface{ Sync() error }); ok {
		return s.Sync()
	}
	return nil
}
