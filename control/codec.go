package control

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"
)

// DefaultPort is the vsock port nbd-enclave's control listener uses.
const DefaultPort = 9100

// Version is the protocol version announced in the hello event.
const Version = 1

// MaxLine bounds every line in both directions, newline included.
const MaxLine = 4096

// MaxGrace bounds grace_ms; the enclave's own stop_grace bounds it further.
const MaxGrace = 24 * time.Hour

// Event names.
const (
	EventHello     = "hello"
	EventStopping  = "stopping"
	EventAppExited = "app-exited"
	EventDown      = "down"
	EventError     = "error"
)

// OpStop is the only request.
const OpStop = "stop"

// Errors callers may branch on with errors.Is.
var (
	// ErrLineTooLong: a line longer than MaxLine.
	ErrLineTooLong = errors.New("control: line longer than 4096 bytes")
	// ErrBadMessage: a line that is not a valid request or event.
	ErrBadMessage = errors.New("control: malformed message")
)

// Event is one line the enclave sends.
type Event struct {
	Event   string `json:"event"`            // "hello", "stopping", "app-exited", "down"
	Status  *int   `json:"status,omitempty"` // app-exited, down
	Clean   bool   `json:"clean,omitempty"`  // down
	Error   string `json:"error,omitempty"`
	Version int    `json:"version,omitempty"` // hello
}

// Request is one line the parent sends.
type Request struct {
	Op string `json:"op"`
	// GraceMS is the grace period the parent asks for, in milliseconds;
	// nil means the enclave's own.
	GraceMS *int64 `json:"grace_ms,omitempty"`
}

// Grace is the requested grace period, and whether one was given.
func (r Request) Grace() (time.Duration, bool) {
	if r.GraceMS == nil {
		return 0, false
	}
	return time.Duration(*r.GraceMS) * time.Millisecond, true
}

// ReadLine reads one newline-terminated line of at most MaxLine bytes
// (newline included) and returns it without the newline. A longer line is
// ErrLineTooLong, found before more than MaxLine bytes are buffered; the
// reader must be a bufio.Reader of at least MaxLine bytes. io.EOF at a
// line boundary is returned as is; a final line without newline is
// io.ErrUnexpectedEOF.
func ReadLine(r *bufio.Reader) ([]byte, error) {
	line, err := r.ReadSlice('\n')
	switch {
	case err == nil:
		if len(line) > MaxLine {
			return nil, ErrLineTooLong
		}
		return line[:len(line)-1], nil
	case errors.Is(err, bufio.ErrBufferFull):
		return nil, ErrLineTooLong
	case errors.Is(err, io.EOF) && len(line) == 0:
		return nil, io.EOF
	case errors.Is(err, io.EOF):
		return nil, io.ErrUnexpectedEOF
	}
	return nil, err
}

// NewReader returns a reader suitable for ReadLine.
func NewReader(r io.Reader) *bufio.Reader { return bufio.NewReaderSize(r, MaxLine) }

// decodeStrict decodes one JSON object, refusing unknown fields and
// trailing data.
func decodeStrict(line []byte, v any) error {
	if len(line) > MaxLine {
		return ErrLineTooLong
	}
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: %w", ErrBadMessage, err)
	}
	if dec.More() {
		return fmt.Errorf("%w: data after the object", ErrBadMessage)
	}
	return nil
}

// ParseRequest decodes and checks one request line (without newline).
func ParseRequest(line []byte) (Request, error) {
	var r Request
	if err := decodeStrict(line, &r); err != nil {
		return Request{}, err
	}
	if r.Op != OpStop {
		return Request{}, fmt.Errorf("%w: unknown op %q", ErrBadMessage, r.Op)
	}
	if g := r.GraceMS; g != nil && (*g < 0 || *g > MaxGrace.Milliseconds()) {
		return Request{}, fmt.Errorf("%w: grace_ms %d out of range [0, %d]", ErrBadMessage, *g, MaxGrace.Milliseconds())
	}
	return r, nil
}

// ParseEvent decodes and checks one event line (without newline).
func ParseEvent(line []byte) (Event, error) {
	var e Event
	if err := decodeStrict(line, &e); err != nil {
		return Event{}, err
	}
	switch e.Event {
	case EventHello, EventStopping, EventError:
	case EventAppExited, EventDown:
		if e.Status == nil {
			return Event{}, fmt.Errorf("%w: %s without status", ErrBadMessage, e.Event)
		}
	default:
		// Newer enclaves may add events; a client passes them on.
		if e.Event == "" {
			return Event{}, fmt.Errorf("%w: no event name", ErrBadMessage)
		}
	}
	return e, nil
}

// marshalLine encodes v as one line, newline included.
func marshalLine(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("control: %w", err)
	}
	if len(b)+1 > MaxLine {
		return nil, ErrLineTooLong
	}
	return append(b, '\n'), nil
}

// Status returns a pointer to s, for Event.Status.
func Status(s int) *int { return &s }
