//go:build !linux

package imgbuild

import "os"

// startWriteback is Linux's early writeback hint; elsewhere the final
// fsync does all the work.
func startWriteback(f *os.File, off, n int64) {}
