package enclave

import (
	"bytes"
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
)

func (s RunState) String() string {
	switch s {
	case RunBlank:
		return "blank"
	case RunLUKS:
		return "LUKS"
	case RunForeign:
		return "foreign data"
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
//   - otherwise, the first MiB (or the whole device, if smaller) being
//     all zero means RunBlank, the state nbd-parent creates a new sparse
//     run image in;
//   - anything else is RunForeign.
func ClassifyRun(dev io.ReaderAt, size int64) (RunState, error) {
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
	for _, b := range head {
		if b != 0 {
			return RunForeign, nil
		}
	}
	return RunBlank, nil
}
