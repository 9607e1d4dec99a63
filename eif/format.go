package eif

import (
	"encoding/binary"
	"fmt"
	"io"
)

// Magic is the EIF file magic, ".eif" in ASCII.
const Magic = ".eif"

// Layout constants of the EIF format, as in aws-nitro-enclaves-image-format
// src/defs/mod.rs.
const (
	// Version is the EIF version Build writes (4: with a metadata section).
	Version = 4
	// MaxSections is the size of the header's section tables.
	MaxSections = 32
	// HeaderSize is the encoded size of Header.
	HeaderSize = 548
	// SectionHeaderSize is the encoded size of SectionHeader.
	SectionHeaderSize = 12
	// FlagARM64 in Header.Flags marks an aarch64 image; clear for x86_64.
	FlagARM64 = 0x1
	// DefaultMem and DefaultCPUs are what nitro-cli's EifBuilder writes.
	DefaultMem  = 1 << 30
	DefaultCPUs = 2
)

// SectionType is the type of an EIF section.
type SectionType uint16

// Section types, numbered as EifSectionType.
const (
	SectionInvalid SectionType = iota
	SectionKernel
	SectionCmdline
	SectionRamdisk
	SectionSignature
	SectionMetadata
)

var sectionNames = [...]string{"Invalid", "Kernel", "Cmdline", "Ramdisk", "Signature", "Metadata"}

// String returns the type's name as nitro-cli spells it without the
// "EifSection" prefix, e.g. "Kernel".
func (t SectionType) String() string {
	if int(t) < len(sectionNames) {
		return sectionNames[t]
	}
	return fmt.Sprintf("SectionType(%d)", uint16(t))
}

// Header is the fixed EIF header at offset 0. All integers are big endian.
// SectionOffsets point at each section's SectionHeader, in file order.
type Header struct {
	Magic          [4]byte
	Version        uint16
	Flags          uint16
	DefaultMem     uint64
	DefaultCPUs    uint64
	Reserved       uint16
	NumSections    uint16
	SectionOffsets [MaxSections]uint64
	SectionSizes   [MaxSections]uint64
	Unused         uint32
	// CRC32 is the IEEE CRC-32 of the whole file except these 4 bytes:
	// the header up to here, then every section header and its data.
	CRC32 uint32
}

// MarshalBinary encodes h in its 548-byte big-endian form.
func (h *Header) MarshalBinary() ([]byte, error) {
	b := make([]byte, 0, HeaderSize)
	b = append(b, h.Magic[:]...)
	b = binary.BigEndian.AppendUint16(b, h.Version)
	b = binary.BigEndian.AppendUint16(b, h.Flags)
	b = binary.BigEndian.AppendUint64(b, h.DefaultMem)
	b = binary.BigEndian.AppendUint64(b, h.DefaultCPUs)
	b = binary.BigEndian.AppendUint16(b, h.Reserved)
	b = binary.BigEndian.AppendUint16(b, h.NumSections)
	for _, v := range h.SectionOffsets {
		b = binary.BigEndian.AppendUint64(b, v)
	}
	for _, v := range h.SectionSizes {
		b = binary.BigEndian.AppendUint64(b, v)
	}
	b = binary.BigEndian.AppendUint32(b, h.Unused)
	b = binary.BigEndian.AppendUint32(b, h.CRC32)
	return b, nil
}

// UnmarshalBinary decodes a 548-byte header. It checks only the length;
// Read validates the contents.
func (h *Header) UnmarshalBinary(b []byte) error {
	if len(b) != HeaderSize {
		return &FormatError{Offset: -1, Reason: fmt.Sprintf("header is %d bytes, want %d", len(b), HeaderSize)}
	}
	copy(h.Magic[:], b[0:4])
	h.Version = binary.BigEndian.Uint16(b[4:])
	h.Flags = binary.BigEndian.Uint16(b[6:])
	h.DefaultMem = binary.BigEndian.Uint64(b[8:])
	h.DefaultCPUs = binary.BigEndian.Uint64(b[16:])
	h.Reserved = binary.BigEndian.Uint16(b[24:])
	h.NumSections = binary.BigEndian.Uint16(b[26:])
	off := 28
	for i := range h.SectionOffsets {
		h.SectionOffsets[i] = binary.BigEndian.Uint64(b[off:])
		off += 8
	}
	for i := range h.SectionSizes {
		h.SectionSizes[i] = binary.BigEndian.Uint64(b[off:])
		off += 8
	}
	h.Unused = binary.BigEndian.Uint32(b[off:])
	h.CRC32 = binary.BigEndian.Uint32(b[off+4:])
	return nil
}

// SectionHeader precedes each section's data.
type SectionHeader struct {
	Type  SectionType
	Flags uint16
	Size  uint64
}

// MarshalBinary encodes s in its 12-byte big-endian form.
func (s *SectionHeader) MarshalBinary() ([]byte, error) {
	b := make([]byte, 0, SectionHeaderSize)
	b = binary.BigEndian.AppendUint16(b, uint16(s.Type))
	b = binary.BigEndian.AppendUint16(b, s.Flags)
	b = binary.BigEndian.AppendUint64(b, s.Size)
	return b, nil
}

// UnmarshalBinary decodes a 12-byte section header; the type is not
// checked here.
func (s *SectionHeader) UnmarshalBinary(b []byte) error {
	if len(b) != SectionHeaderSize {
		return &FormatError{Offset: -1, Reason: fmt.Sprintf("section header is %d bytes, want %d", len(b), SectionHeaderSize)}
	}
	s.Type = SectionType(binary.BigEndian.Uint16(b))
	s.Flags = binary.BigEndian.Uint16(b[2:])
	s.Size = binary.BigEndian.Uint64(b[4:])
	return nil
}

// KernelFlags returns the header flags for a kernel image, as nitro-cli
// sets them: FlagARM64 for an arm64 Image (the "ARM\x64" magic at offset
// 56 of its header, Documentation/arch/arm64/booting.rst), 0 for anything
// else (an x86_64 bzImage).
func KernelFlags(kernel io.ReaderAt) uint16 {
	var magic [4]byte
	if _, err := kernel.ReadAt(magic[:], 56); err == nil && string(magic[:]) == "ARM\x64" {
		return FlagARM64
	}
	return 0
}
