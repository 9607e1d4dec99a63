package eif

import (
	"errors"
	"fmt"
)

// ErrFormat is matched (errors.Is) by every *FormatError.
var ErrFormat = errors.New("eif: malformed image")

// ErrNotEIF means the file does not start with the EIF magic.
var ErrNotEIF = errors.New("eif: not an EIF file (bad magic)")

// FormatError describes a structural problem found by Read.
type FormatError struct {
	Offset int64 // where the problem is, -1 if nowhere in particular
	Reason string
}

func (e *FormatError) Error() string {
	if e.Offset < 0 {
		return "eif: " + e.Reason
	}
	return fmt.Sprintf("eif: at offset %d: %s", e.Offset, e.Reason)
}

// Is makes errors.Is(err, ErrFormat) true.
func (e *FormatError) Is(target error) bool { return target == ErrFormat }

func formatErr(off int64, format string, a ...any) error {
	return &FormatError{Offset: off, Reason: fmt.Sprintf(format, a...)}
}

// CRCError means the header's CRC32 does not match the file's contents.
// Read returns it together with the fully parsed *File.
type CRCError struct {
	Header, Computed uint32
}

func (e *CRCError) Error() string {
	return fmt.Sprintf("eif: CRC32 mismatch: header says %08x, contents give %08x", e.Header, e.Computed)
}
