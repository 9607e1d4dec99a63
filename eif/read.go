package eif

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"io"
)

// Limits on sections Read loads into memory; kernels and ramdisks are
// only streamed.
const (
	maxCmdline   = 1 << 20
	maxMetadata  = 1 << 20
	maxSignature = 1 << 20
)

// Section is one section of a parsed EIF.
type Section struct {
	Type  SectionType
	Flags uint16
	// Offset is where the section's 12-byte header starts (the value in
	// Header.SectionOffsets); its data follows at DataOffset.
	Offset int64
	Size   int64
}

// DataOffset is the file offset of the section's data.
func (s Section) DataOffset() int64 { return s.Offset + SectionHeaderSize }

// File is a parsed and validated EIF.
type File struct {
	Header Header
	// Sections are in file order (which is also header-table order).
	Sections []Section
	// Cmdline is the cmdline section's text.
	Cmdline string
	// Metadata is the metadata section, nil when there is none
	// (versions before 4).
	Metadata *Metadata
	// Signature is the raw signature section (CBOR), nil when unsigned.
	Signature []byte
	// PCRs are recomputed from the sections. PCR8 is set for signed images.
	PCRs PCRs
	// CRC32 is the checksum computed over the file; compare Header.CRC32.
	CRC32 uint32

	r io.ReaderAt
}

// CRCValid reports whether the header's CRC32 matches the contents.
func (f *File) CRCValid() bool { return f.CRC32 == f.Header.CRC32 }

// Open returns a reader of section i's data; i indexes f.Sections.
func (f *File) Open(i int) *io.SectionReader {
	s := f.Sections[i]
	return io.NewSectionReader(f.r, s.DataOffset(), s.Size)
}

// Read is ReadContext without cancellation.
func Read(r io.ReaderAt, size int64) (*File, error) {
	return ReadContext(context.Background(), r, size)
}

// ReadContext parses the EIF of size bytes in r, checks its structure,
// reads every section once to recompute the CRC32 and the PCRs, and
// decodes the cmdline and metadata.
//
// Structural problems are *FormatError (errors.Is ErrFormat), a wrong
// magic is ErrNotEIF. Sections must follow each other without gaps from
// the end of the header to the end of the file, match the header's offset
// and size tables, be of a known type, and include exactly one kernel and
// one cmdline, at least one ramdisk and at most one metadata and one
// signature section. If only the CRC32 is wrong, ReadContext returns the
// complete *File together with a *CRCError, so tools can still describe
// a damaged image.
func ReadContext(ctx context.Context, r io.ReaderAt, size int64) (*File, error) {
	if size < HeaderSize {
		return nil, formatErr(0, "file is %d bytes, smaller than the %d-byte header", size, HeaderSize)
	}
	hb := make([]byte, HeaderSize)
	if _, err := r.ReadAt(hb, 0); err != nil {
		return nil, fmt.Errorf("eif: reading header: %w", err)
	}
	f := &File{r: r}
	if err := f.Header.UnmarshalBinary(hb); err != nil {
		return nil, err
	}
	h := &f.Header
	if string(h.Magic[:]) != Magic {
		return nil, fmt.Errorf("%w: magic %q", ErrNotEIF, h.Magic[:])
	}
	n := int(h.NumSections)
	if n == 0 || n > MaxSections {
		return nil, formatErr(26, "section count %d is not between 1 and %d", n, MaxSections)
	}
	for i := n; i < MaxSections; i++ {
		if h.SectionOffsets[i] != 0 || h.SectionSizes[i] != 0 {
			return nil, formatErr(28+8*int64(i), "unused section table entry %d is not zero", i)
		}
	}

	// Walk the sections: layout first, so nothing large is read from a
	// malformed file.
	off := int64(HeaderSize)
	counts := map[SectionType]int{}
	shb := make([]byte, SectionHeaderSize)
	for i := 0; i < n; i++ {
		if uint64(off) != h.SectionOffsets[i] {
			return nil, formatErr(off, "section %d starts here but the header says %d", i, h.SectionOffsets[i])
		}
		if size-off < SectionHeaderSize {
			return nil, formatErr(off, "section %d header runs past the end of the file", i)
		}
		if _, err := r.ReadAt(shb, off); err != nil {
			return nil, fmt.Errorf("eif: reading section %d header at %d: %w", i, off, err)
		}
		var sh SectionHeader
		_ = sh.UnmarshalBinary(shb)
		if sh.Type == SectionInvalid || sh.Type > SectionMetadata {
			return nil, formatErr(off, "section %d has invalid type %d", i, uint16(sh.Type))
		}
		if sh.Size != h.SectionSizes[i] {
			return nil, formatErr(off, "section %d size %d differs from the header's %d", i, sh.Size, h.SectionSizes[i])
		}
		if sh.Size > uint64(size-off-SectionHeaderSize) {
			return nil, formatErr(off, "section %d (%v, %d bytes) runs past the end of the file", i, sh.Type, sh.Size)
		}
		counts[sh.Type]++
		f.Sections = append(f.Sections, Section{Type: sh.Type, Flags: sh.Flags, Offset: off, Size: int64(sh.Size)})
		off += SectionHeaderSize + int64(sh.Size)
	}
	if off != size {
		return nil, formatErr(off, "%d bytes after the last section", size-off)
	}
	for _, c := range []struct {
		t        SectionType
		min, max int
	}{{SectionKernel, 1, 1}, {SectionCmdline, 1, 1}, {SectionRamdisk, 1, MaxSections}, {SectionMetadata, 0, 1}, {SectionSignature, 0, 1}} {
		if got := counts[c.t]; got < c.min || got > c.max {
			return nil, formatErr(-1, "%d %v sections, want %d to %d", got, c.t, c.min, c.max)
		}
	}

	// Read everything once for the CRC and the PCRs.
	crc := crc32.NewIEEE()
	crc.Write(hb[:HeaderSize-4])
	m := newMeasurer()
	buf := make([]byte, 1<<20)
	for i, s := range f.Sections {
		if _, err := r.ReadAt(shb, s.Offset); err != nil {
			return nil, fmt.Errorf("eif: reading section %d header at %d: %w", i, s.Offset, err)
		}
		crc.Write(shb)
		var keep *bytes.Buffer
		switch limit := map[SectionType]int64{SectionCmdline: maxCmdline, SectionMetadata: maxMetadata, SectionSignature: maxSignature}[s.Type]; {
		case limit > 0 && s.Size > limit:
			return nil, formatErr(s.Offset, "%v section is %d bytes, more than the %d allowed", s.Type, s.Size, limit)
		case limit > 0:
			keep = bytes.NewBuffer(make([]byte, 0, s.Size))
		}
		w := io.MultiWriter(crc, m.writer(s.Type))
		if keep != nil {
			w = io.MultiWriter(w, keep)
		}
		if err := copyCtx(ctx, w, f.Open(i), buf); err != nil {
			return nil, fmt.Errorf("eif: reading %v section at %d: %w", s.Type, s.Offset, err)
		}
		switch s.Type {
		case SectionCmdline:
			f.Cmdline = keep.String()
		case SectionMetadata:
			md := new(Metadata)
			if err := json.Unmarshal(keep.Bytes(), md); err != nil {
				return nil, formatErr(s.DataOffset(), "metadata is not valid JSON: %v", err)
			}
			f.Metadata = md
		case SectionSignature:
			f.Signature = keep.Bytes()
			der, err := signingCertDER(f.Signature)
			if err != nil {
				return nil, formatErr(s.DataOffset(), "signature section: %v", err)
			}
			m.certDER(der)
		}
	}
	f.CRC32 = crc.Sum32()
	f.PCRs = m.pcrs()
	if !f.CRCValid() {
		return f, &CRCError{Header: h.CRC32, Computed: f.CRC32}
	}
	return f, nil
}
