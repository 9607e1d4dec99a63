//go:build !linux

package nbd

import (
	"bufio"
	"errors"
	"syscall"
)

// Elsewhere write payloads are always read into buffers.

type payloadPipe struct{}

type pipePool struct{}

func (*pipePool) closeAll() {}

func (ss *session) readPayloadPipe(*bufio.Reader, int, syscall.RawConn, syscall.RawConn) (*payloadPipe, *buffer, error) {
	return nil, nil, nil
}

func (ss *session) writePipe(*payloadPipe, int64, int64) error { return errors.ErrUnsupported }

func writevRaw(syscall.RawConn, [][]byte, bool) error { return errors.ErrUnsupported }

const vsockBufferSize = 0

func setVsockBuffer(syscall.RawConn, uint64) {}
