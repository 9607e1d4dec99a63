package enclave

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
)

// RunState is what the run device holds before it is used.
type RunState int

const (
	// RunBlank: no LUKS signature anywhere a LUKS2 header can start, and
	// the first MiB is all zeroes. Only a blank device is ever formatted
	// (outside ephemeral mode).
	RunBlank RunState = iota
	// RunLUKS: a LUKS primary or secondary header signature is present.
	// It is unlocked, never formatted, even if the key is wrong.
	RunLUKS
	// RunForeign: not blank and no LUKS signature. Refused: it holds data
	// we did not write (wrong export, or a wiped header), and formatting
	// it would destroy that.
	RunForeign
	// RunTampered: the header area is all zero but the data area is not:
	// a volume whose LUKS header was wiped (by the parent, or by anyone
	// with the run image). Refused with ErrTamperedRun, never formatted:
	// formatting would silently reset the volume.
	RunTampered
)

// ErrTamperedRun: the run volume's header area reads as zero but its data
// area holds data (ciphertext never reads as zero blocks): someone wiped
// the LUKS header. Nothing is written. It catches a header-only wipe, not a
// parent that also zeroes the public sample blocks (see StampRun).
var ErrTamperedRun = errors.New("enclave: the run volume's header area is zeroed but its data area is not (wiped LUKS header?); refusing to format it")

func (s RunState) String() string {
	switch s {
	case RunBlank:
		return "blank"
	case RunLUKS:
		return "LUKS"
	case RunForeign:
		return "foreign data"
	case RunTampered:
		return "wiped header"
	}
	return fmt.Sprintf("RunState(%d)", int(s))
}

// BlankSize is how much of a device must be zero for it to count as blank.
const BlankSize = 1 << 20

var (
	luksMagic1 = []byte("LUKS\xba\xbe")
	luksMagic2 = []byte("SKUL\xba\xbe")
)

// luks2HeaderOffsets are where LUKS2 allows the secondary header to start
// (the primary header's size: 16 KiB to 4 MiB, powers of two). The
// primary starts at 0.
var luks2HeaderOffsets = []int64{
	16 << 10, 32 << 10, 64 << 10, 128 << 10, 256 << 10, 512 << 10, 1 << 20, 2 << 20, 4 << 20,
}

// ClassifyRun reads the start of a run device of the given size and
// decides which RunState it is in:
//
//   - a LUKS magic ("LUKS\xba\xbe") at offset 0, or a LUKS2 secondary magic
//     ("SKUL\xba\xbe") at any offset a secondary header may use (16 KiB to
//     4 MiB), means RunLUKS: even a device whose primary header was
//     destroyed still counts as holding a LUKS volume;
//   - otherwise, when the first MiB (or the whole device, if smaller) is
//     not all zero, RunForeign;
//   - otherwise, when every sample block (SampleOffsets: 64 blocks of 4 KiB
//     spread over the whole device, the last block included) is all zero,
//     RunBlank, the state nbd-parent creates a new sparse run image in;
//   - else RunTampered: a zeroed header over a data area holding data.
//
// A negative size is an error; a size larger than the device makes the
// reads past its end fail.
func ClassifyRun(dev io.ReaderAt, size int64) (RunState, error) {
	if size < 0 {
		return 0, fmt.Errorf("enclave: run device size %d", size)
	}
	magic := make([]byte, len(luksMagic1))
	for _, off := range append([]int64{0}, luks2HeaderOffsets...) {
		if off+int64(len(magic)) > size {
			break
		}
		if _, err := dev.ReadAt(magic, off); err != nil {
			return 0, fmt.Errorf("enclave: reading run device at %d: %w", off, err)
		}
		if (off == 0 && bytes.Equal(magic, luksMagic1)) || bytes.Equal(magic, luksMagic2) {
			return RunLUKS, nil
		}
	}
	n := min(size, BlankSize)
	head := make([]byte, n)
	if _, err := dev.ReadAt(head, 0); err != nil && !(errors.Is(err, io.EOF) && n == size) {
		return 0, fmt.Errorf("enclave: reading the first %d bytes of the run device: %w", n, err)
	}
	if !allZero(head) {
		return RunForeign, nil
	}
	block := make([]byte, SampleBlock)
	for _, off := range SampleOffsets(size) {
		if _, err := dev.ReadAt(block, off); err != nil {
			return 0, fmt.Errorf("enclave: reading the run device at %d: %w", off, err)
		}
		if !allZero(block) {
			return RunTampered, nil
		}
	}
	return RunBlank, nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// Samples of the data area that ClassifyRun reads.
const (
	SampleBlock = 4096
	Samples     = 64
)

// SampleOffsets returns the offsets of the sample blocks of a device of
// size bytes: Samples blocks of SampleBlock bytes spread evenly from the
// start to the last whole block, aligned to SampleBlock (the last one to
// 512 when size is not a multiple of 4096). A device smaller than 2 MiB has
// none: its first MiB is the header area ClassifyRun reads whole.
func SampleOffsets(size int64) []int64 {
	if size < 2*BlankSize {
		return nil
	}
	last := (size - SampleBlock) &^ 511
	step := last / (Samples - 1)
	offs := make([]int64, 0, Samples)
	for i := int64(0); i < Samples-1; i++ {
		offs = append(offs, (i*step)&^(SampleBlock-1))
	}
	return append(offs, last)
}

// StampRun writes random bytes over the sample blocks that lie in the data
// area of a newly formatted run volume (at or after dataOffset), where
// ciphertext would go. A volume whose application has written little (and
// whose data area is thus mostly sparse zeroes) then still shows data at
// the samples, so a wiped header alone is RunTampered, not RunBlank. The
// sample offsets are public: a parent that also zeroes every sample, or
// serves a fresh file, still presents a blank volume (README, "What
// remains": rollback is not solved here).
// The filesystem over dm-crypt just sees random blocks, as on any disk
// that was not wiped.
func StampRun(dev io.WriterAt, size, dataOffset int64) error {
	block := make([]byte, SampleBlock)
	for _, off := range SampleOffsets(size) {
		if off < dataOffset {
			continue
		}
		rand.Read(block)
		if _, err := dev.WriteAt(block, off); err != nil {
			return fmt.Errorf("enclave: stamping the run volume at %d: %w", off, err)
		}
	}
	return nil
}
