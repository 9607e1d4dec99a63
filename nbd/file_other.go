//go:build !linux

package nbd

import (
	"errors"
	"os"
	"syscall"
)

// Elsewhere the server still works, with these differences: no advisory
// lock (flock semantics differ across systems and production runs on
// Linux), fsync instead of fdatasync, and TRIM/WRITE_ZEROES fall back to
// writing zeroes.

func lockFile(*os.File) error { return nil }

func datasync(f *os.File) error { return f.Sync() }

func punchHole(*os.File, int64, int64) error { return errors.ErrUnsupported }

func zeroRange(*os.File, int64, int64) error { return errors.ErrUnsupported }

func sendRange(syscall.RawConn, *os.File, int64, int64) error { return errors.ErrUnsupported }

func setRcvLowat(syscall.RawConn, int) bool { return false }

func seekExtents(_ *os.File, off, end int64, _ int, emit func(int64, bool)) error {
	emit(end-off, false)
	return nil
}
