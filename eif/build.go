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
	// Signer, if set, signs PCR0 into a signature section (the last
	// section) and its certificate sets PCR8. ECDSA signatures are
	// randomized, so signed images differ from build to build in the
	// signature section (and CRC) only; the PCRs do not.
	Signer *Signer
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

// plan lists the sections in nitro-cli's order: kernel, cmdline,
// metadata, ramdisks (the signature is added once PCR0 is known).
func plan(spec *Spec) ([]plannedSection, error) {
	if spec.Kernel == nil {
		return nil, fmt.Errorf("%w: no kernel", ErrInvalidSpec)
	}
	if len(spec.Ramdisks) == 0 {
		return nil, fmt.Errorf("%w: no ramdisk (the first ramdisk is the bootstrap one)", ErrInvalidSpec)
	}
	if strings.IndexByte(spec.Cmdline, 0) >= 0 {
		return nil, fmt.Errorf("%w: cmdline contains a NUL byte", ErrInvalidSpec)
	}
	n := 3 + len(spec.Ramdisks)
	if spec.Signer != nil {
		n++
	}
	if n > MaxSections {
		return nil, fmt.Errorf("%w: %d sections, at most %d fit", ErrInvalidSpec, n, MaxSections)
	}
	meta, err := spec.Metadata.marshal()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidSpec, err)
	}
	secs := []plannedSection{
		{SectionKernel, io.NewSectionReader(spec.Kernel, 0, spec.Kernel.Size()), "kernel"},
		{SectionCmdline, io.NewSectionReader(strings.NewReader(spec.Cmdline), 0, int64(len(spec.Cmdline))), "cmdline"},
		{SectionMetadata, io.NewSectionReader(bytes.NewReader(meta), 0, int64(len(meta))), "metadata"},
	}
	for i, r := range spec.Ramdisks {
		if r == nil {
			return nil, fmt.Errorf("%w: ramdisk %d is nil", ErrInvalidSpec, i)
		}
		secs = append(secs, plannedSection{SectionRamdisk, io.NewSectionReader(r, 0, r.Size()), fmt.Sprintf("ramdisk %d", i)})
	}
	for _, s := range secs {
		if s.data.Size() < 0 {
			return nil, fmt.Errorf("%w: %s has negative size", ErrInvalidSpec, s.name)
		}
	}
	return secs, nil
}

// header builds the EIF header for secs, without the CRC.
func header(spec *Spec, secs []plannedSection) *Header {
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
		h.SectionOffsets[i] = off
		h.SectionSizes[i] = uint64(s.data.Size())
		off += SectionHeaderSize + uint64(s.data.Size())
	}
	return h
}

// Build writes an EIF made from spec to w and returns its PCRs. It reads
// every input twice: first to compute the header's CRC32 and the PCRs
// (both needed before the first byte is written), then to copy. The
// output is a function of spec alone: give Metadata a fixed BuildTime
// (see SourceDateEpoch) for reproducible images.
func Build(ctx context.Context, w io.Writer, spec *Spec) (PCRs, error) {
	secs, err := plan(spec)
	if err != nil {
		return PCRs{}, err
	}
	m := newMeasurer()
	if spec.Signer != nil {
		der, err := spec.Signer.certDER()
		if err != nil {
			return PCRs{}, fmt.Errorf("%w: %w", ErrInvalidSpec, err)
		}
		m.certDER(der)
	}
	buf := make([]byte, 1<<20)

	// Pass 1: measurements, and the CRC of everything after the header
	// (the header's own bytes depend on the signature's size, so its CRC
	// is combined in afterwards).
	body := crc32.NewIEEE()
	var bodyLen int64
	for _, s := range secs {
		sh := SectionHeader{Type: s.typ, Size: uint64(s.data.Size())}
		shb, _ := sh.MarshalBinary()
		body.Write(shb)
		if err := copyCtx(ctx, io.MultiWriter(body, m.writer(s.typ)), s.data, buf); err != nil {
			return PCRs{}, fmt.Errorf("eif: reading %s: %w", s.name, err)
		}
		bodyLen += SectionHeaderSize + s.data.Size()
	}
	pcrs := m.pcrs()
	if spec.Signer != nil {
		sig, err := spec.Signer.signatureSection(pcrs.PCR0)
		if err != nil {
			return PCRs{}, fmt.Errorf("eif: %w", err)
		}
		sh := SectionHeader{Type: SectionSignature, Size: uint64(len(sig))}
		shb, _ := sh.MarshalBinary()
		body.Write(shb)
		body.Write(sig)
		bodyLen += SectionHeaderSize + int64(len(sig))
		secs = append(secs, plannedSection{SectionSignature, io.NewSectionReader(bytes.NewReader(sig), 0, int64(len(sig))), "signature"})
	}
	h := header(spec, secs)
	hb, _ := h.MarshalBinary()
	h.CRC32 = crc32Combine(crc32.ChecksumIEEE(hb[:HeaderSize-4]), body.Sum32(), bodyLen)

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
	return pcrs, nil
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

// crc32Combine returns the IEEE CRC-32 of A||B from crc1 = CRC(A),
// crc2 = CRC(B) and len2 = len(B), by zlib's crc32_combine method
// (applying len2 zero bytes to crc1 as GF(2) matrix powers).
func crc32Combine(crc1, crc2 uint32, len2 int64) uint32 {
	if len2 <= 0 {
		return crc1 ^ crc2
	}
	var even, odd [32]uint32
	odd[0] = crc32.IEEE // the reflected polynomial: one zero bit
	row := uint32(1)
	for n := 1; n < 32; n++ {
		odd[n] = row
		row <<= 1
	}
	gf2Square(&even, &odd) // two zero bits
	gf2Square(&odd, &even) // four zero bits
	for {
		gf2Square(&even, &odd) // first pass: one zero byte
		if len2&1 != 0 {
			crc1 = gf2Times(&even, crc1)
		}
		len2 >>= 1
		if len2 == 0 {
			break
		}
		gf2Square(&odd, &even)
		if len2&1 != 0 {
			crc1 = gf2Times(&odd, crc1)
		}
		len2 >>= 1
		if len2 == 0 {
			break
		}
	}
	return crc1 ^ crc2
}

func gf2Times(mat *[32]uint32, vec uint32) uint32 {
	var sum uint32
	for i := 0; vec != 0; i, vec = i+1, vec>>1 {
		if vec&1 != 0 {
			sum ^= mat[i]
		}
	}
	return sum
}

func gf2Square(square, mat *[32]uint32) {
	for n := range 32 {
		square[n] = gf2Times(mat, mat[n])
	}
}
