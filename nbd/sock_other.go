//go:build !linux

package nbd

import (
	"errors"
	"syscall"
)

func writevRaw(syscall.RawConn, [][]byte) error { return errors.ErrUnsupported }

const vsockBufferSize = 0

func setVsockBuffer(syscall.RawConn, uint64) {}
