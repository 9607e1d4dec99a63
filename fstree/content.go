package fstree

import (
	"bytes"
	"fmt"
	"io"
	"os"
)

// Bytes is file content held in memory.
type Bytes []byte

// Size returns len(b).
func (b Bytes) Size() int64 { return int64(len(b)) }

// Open returns a reader over b.
func (b Bytes) Open() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }

// FileRange is file content stored as Length bytes at Offset in the file
// Name, such as a spool file holding the content of many tar entries, or a
// whole file on disk (Offset 0, Length its size). The file is opened on
// every Open.
type FileRange struct {
	Name   string
	Offset int64
	Length int64
}

// Size returns r.Length.
func (r FileRange) Size() int64 { return r.Length }

// Open opens r.Name and returns a reader over the range.
func (r FileRange) Open() (io.ReadCloser, error) {
	f, err := os.Open(r.Name)
	if err != nil {
		return nil, fmt.Errorf("fstree: open content: %w", err)
	}
	return &sectionCloser{io.NewSectionReader(f, r.Offset, r.Length), f, r}, nil
}

type sectionCloser struct {
	*io.SectionReader
	f *os.File
	r FileRange
}

func (s *sectionCloser) Read(p []byte) (int, error) {
	n, err := s.SectionReader.Read(p)
	if err == io.EOF && s.SectionReader.Size() > 0 {
		if off, _ := s.Seek(0, io.SeekCurrent); off < s.SectionReader.Size() {
			return n, fmt.Errorf("fstree: %s: content shorter than %d bytes at offset %d: %w", s.r.Name, s.r.Length, s.r.Offset, io.ErrUnexpectedEOF)
		}
	}
	return n, err
}

func (s *sectionCloser) Close() error { return s.f.Close() }

// SectionContent is file content read from an io.ReaderAt, such as a spool
// file kept open by its producer. The ReaderAt must stay valid as long as
// the tree is used.
type SectionContent struct {
	R      io.ReaderAt
	Offset int64
	Length int64
}

// Size returns s.Length.
func (s SectionContent) Size() int64 { return s.Length }

// Open returns a reader over the section.
func (s SectionContent) Open() (io.ReadCloser, error) {
	return io.NopCloser(io.NewSectionReader(s.R, s.Offset, s.Length)), nil
}
