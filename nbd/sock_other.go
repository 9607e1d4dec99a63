//go:build !linux

package nbd

import (
	"errors"
	"io"
	"syscall"
)

func writevRaw(syscall.RawConn, [][]byte) error { return errors.ErrUnsupported }

const vsockBufferSize = 0

func setVsockBuffer(syscall.RawConn, uint64) {}

func waitingSends(syscall.RawConn) io.Reader { return nil }
