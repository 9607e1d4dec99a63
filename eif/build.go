package eif

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"strings"
)

// Blob is section content of known size that Build can read twice (once
// to measure and checksum, once to write). *bytes.Reader,
// *strings.Reader and *io.SectionReader (wrap an *os.File with
// io.NewSectionReader(f, 0, size)) are Blobs.
type Blob interface {
	io.ReaderAt
	Size() int64
}

// Spec is what Build puts in an EIF.
type Spec struct {
	// Kernel is the bzImage (x86_64) or Image (aarch64).
	Kernel Blob
	// Cmdline is the kernel command line, measured into PCR0 and PCR1.
	// It is written as given (nitro-cli trims surrounding whitespace
	// first); it may not contain NUL bytes.
	Cmdline string
	// Ramdisks are the initramfs images in boot order: the first is the
	// bootstrap ramdisk (PCR1), the others the application ramdisks
	// (PCR2). At least one is required.
	Ramdisks []Blob
	// Metadata fills the metadata section.
	Metadata Metadata
	// Flags is the header flags word (FlagARM64 for aarch64 kernels).
	Flags uint16
	// DefaultMem (bytes) and DefaultCPUs go in the header; 0 means
	// DefaultMem and DefaultCPUs as nitro-cli writes.
	DefaultMem, DefaultCPUs uint64
}

// ErrInvalidSpec is wrapped by errors about an unusable Spec.
var ErrInvalidSpec = errors.New("eif: invalid build spec")

// ErrInputChanged means a Blob returned different bytes on the second
// read, so the written image would not match its header CRC and PCRs.
var ErrInputChanged = errors.New("eif: input changed while building")

// plannedSection is one section to write.
type plannedSection struct {
	typ  SectionType
	data *io.SectionReader
	name string // for errors
}

// plan lays out the sections in nitro-cli's order: kernel, cmdline,
// metadata, ramdisks.
func plan(spec *Spec) (*Header, []plannedSection, error) {
	if spec.Kernel == nil {
		return nil, nil, fmt.Errorf("%w: no kernel", ErrInvalidSpec)
	}
	if len(spec.Ramdisks) == 0 {
		return nil, nil, fmt.Errorf("%w: no ramdisk (the first ramdisk is the bootstrap one)", ErrInvalidSpec)
	}
	if strings.IndexByte(spec.Cmdline, 0) >= 0 {
		return nil, nil, fmt.Errorf("%w: cmdline contains a NUL byte", ErrInvalidSpec)
	}
	if n := 3 + len(spec.Ramdisks); n > MaxSections {
		return nil, nil, fmt.Errorf("%w: %d sections, at most %d fit", ErrInvalidSpec, n, MaxSections)
	}
	meta, err := spec.Metadata.marshal()
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrInvalidSpec, err)
	}
	secs := []plannedSection{
		{SectionKernel, io.NewSectionReader(spec.Kernel, 0, spec.Kernel.Size()), "kernel"},
		{SectionCmdline, io.NewSectionReader(strings.NewReader(spec.Cmdline), 0, int64(len(spec.Cmdline))), "cmdline"},
		{SectionMetadata, io.NewSectionReader(bytes.NewReader(meta), 0, int64(len(meta))), "metadata"},
	}
	for i, r := range spec.Ramdisks {
		if r == nil {
			return nil, nil, fmt.Errorf("%w: ramdisk %d is nil", ErrInvalidSpec, i)
		}
		secs = append(secs, plannedSection{SectionRamdisk, io.NewSectionReader(r, 0, r.Size()), fmt.Sprintf("ramdisk %d", i)})
	}
	h := &Header{
		Version:     Version,
		Flags:       spec.Flags,
		DefaultMem:  spec.DefaultMem,
		DefaultCPUs: spec.DefaultCPUs,
		NumSections: uint16(len(secs)),
	}
	copy(h.Magic[:], Magic)
	if h.DefaultMem == 0 {
		h.DefaultMem = DefaultMem
	}
	if h.DefaultCPUs == 0 {
		h.DefaultCPUs = DefaultCPUs
	}
	off := uint64(HeaderSize)
	for i, s := range secs {
		if s.data.Size() < 0 {
			return nil, nil, fmt.Errorf("%w: %s has negative size", ErrInvalidSpec, s.name)
		}
		h.SectionOffsets[i] = off
		h.SectionSizes[i] = uint64(s.data.Size())
		off += SectionHeaderSize + uint64(s.data.Size())
	}
	return h, secs, nil
}

// Build writes an EIF made from spec to w and returns its PCRs. It reads
// every input twice: first to compute the header's CRC32 and the PCRs
// (both needed before the first byte is written), then to copy. The
// output is a function of spec alone: give Metadata a fixed BuildTime
// (see SourceDateEpoch) for reproducible images.
func Build(ctx context.Context, w io.Writer, spec *Spec) (PCRs, error) {
	h, secs, err := plan(spec)
	if err != nil {
		return PCRs{}, err
	}
	buf := make([]byte, 1<<20)

	// Pass 1: CRC and measurements.
	crc := crc32.NewIEEE()
	m := newMeasurer()
	hb, _ := h.MarshalBinary()
	crc.Write(hb[:HeaderSize-4])
	for _, s := range secs {
		sh := SectionHeader{Type: s.typ, Size: uint64(s.data.Size())}
		shb, _ := sh.MarshalBinary()
		crc.Write(shb)
		if err := copyCtx(ctx, io.MultiWriter(crc, m.writer(s.typ)), s.data, buf); err != nil {
			return PCRs{}, fmt.Errorf("eif: reading %s: %w", s.name, err)
		}
	}
	h.CRC32 = crc.Sum32()

	// Pass 2: write, re-checking the CRC to catch inputs that changed.
	crc2 := crc32.NewIEEE()
	hb, _ = h.MarshalBinary()
	if _, err := w.Write(hb); err != nil {
		return PCRs{}, fmt.Errorf("eif: writing header: %w", err)
	}
	crc2.Write(hb[:HeaderSize-4])
	for _, s := range secs {
		sh := SectionHeader{Type: s.typ, Size: uint64(s.data.Size())}
		shb, _ := sh.MarshalBinary()
		if _, err := w.Write(shb); err != nil {
			return PCRs{}, fmt.Errorf("eif: writing %s header: %w", s.name, err)
		}
		crc2.Write(shb)
		if err := copyCtx(ctx, teeWriter{w, crc2}, s.data, buf); err != nil {
			return PCRs{}, fmt.Errorf("eif: writing %s: %w", s.name, err)
		}
	}
	if crc2.Sum32() != h.CRC32 {
		return PCRs{}, ErrInputChanged
	}
	return m.pcrs(), nil
}

// teeWriter writes to w, then feeds what was written to h.
type teeWriter struct {
	w io.Writer
	h hash.Hash
}

func (t teeWriter) Write(p []byte) (int, error) {
	n, err := t.w.Write(p)
	t.h.Write(p[:n])
	return n, err
}

// copyCtx copies all of r to w through buf, checking ctx between chunks,
// and fails if r ends before its size.
func copyCtx(ctx context.Context, w io.Writer, r *io.SectionReader, buf []byte) error {
	if _, err := r.Seek(0, io.SeekStart); err != nil {
		return err
	}
	remain := r.Size()
	for remain > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		chunk := buf
		if int64(len(chunk)) > remain {
			chunk = chunk[:remain]
		}
		n, err := io.ReadFull(r, chunk)
		if n > 0 {
			if _, werr := w.Write(chunk[:n]); werr != nil {
				return werr
			}
			remain -= int64(n)
		}
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return fmt.Errorf("%w: %d bytes short", io.ErrUnexpectedEOF, remain)
			}
			return err
		}
	}
	return nil
}
