package nbdclient

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// Protocol constants from the NBD protocol specification (doc/proto.md).
const (
	magicNBD       = 0x4e42444d41474943 // "NBDMAGIC"
	magicIHaveOpt  = 0x49484156454f5054 // "IHAVEOPT"
	magicOptReply  = 0x0003e889045565a9
	flagFixedNew   = 1 << 0 // handshake flag and client flag
	flagNoZeroes   = 1 << 1 // handshake flag and client flag
	optExportName  = 1
	optAbort       = 2
	optGo          = 7
	repAck         = 1
	repInfo        = 3
	repFlagError   = 1 << 31
	repErrUnsup    = repFlagError | 1
	infoExport     = 0
	infoBlockSize  = 3
	maxNameLength  = 4096
	exportNameZero = 124 // zero padding after NBD_OPT_EXPORT_NAME without NO_ZEROES
)

// MaxReplyLength bounds the payload of a single option reply. The largest
// legitimate reply to NBD_OPT_GO is an NBD_INFO_NAME or NBD_REP_ERR_* text,
// which the specification limits to 4096 bytes; anything larger is refused
// rather than allocated.
const MaxReplyLength = 4096 + 64

// maxInfoReplies bounds how many NBD_REP_INFO replies one NBD_OPT_GO may
// produce before we give up on the server.
const maxInfoReplies = 64

// Transmission flags (NBD_FLAG_*) a server announces for an export. The
// kernel NBD client takes them verbatim as NBD_ATTR_SERVER_FLAGS.
const (
	FlagHasFlags   uint16 = 1 << 0
	FlagReadOnly   uint16 = 1 << 1
	FlagSendFlush  uint16 = 1 << 2
	FlagSendFUA    uint16 = 1 << 3
	FlagRotational uint16 = 1 << 4
	FlagSendTrim   uint16 = 1 << 5
	FlagMultiConn  uint16 = 1 << 8
)

// ErrNotNBD reports that the peer did not greet us as a fixed-newstyle NBD
// server.
var ErrNotNBD = errors.New("nbdclient: peer is not a fixed-newstyle NBD server")

// ErrProtocol reports a reply that violates the NBD protocol.
var ErrProtocol = errors.New("nbdclient: protocol violation")

// MaxExportSize is the largest export size Handshake accepts (2^62
// bytes, 4 EiB). The size comes from the server; above 2^63 it would turn
// negative in an int64 (Linux's loff_t), and offsets computed from it
// (size plus a block, sectors times 512) must not overflow either.
const MaxExportSize = 1 << 62

// ErrUnknownExport reports that the server does not have the export.
var ErrUnknownExport = errors.New("nbdclient: unknown export")

// BlockSize holds the block size constraints of NBD_INFO_BLOCK_SIZE. A zero
// value means the server did not send them.
type BlockSize struct {
	Minimum, Preferred, Maximum uint32
}

// Export describes an export negotiated by [Handshake]; after it returns,
// the connection is in the transmission phase.
type Export struct {
	Name      string
	Size      uint64
	Flags     uint16 // NBD_FLAG_* transmission flags
	BlockSize BlockSize
	// UsedExportName is true when the server did not support NBD_OPT_GO
	// and NBD_OPT_EXPORT_NAME was used instead.
	UsedExportName bool
}

// ReadOnly reports whether the server exports the device read-only.
func (e *Export) ReadOnly() bool { return e.Flags&FlagReadOnly != 0 }

// OptionError is an NBD_REP_ERR_* reply to an option.
type OptionError struct {
	Option  uint32
	Reply   uint32 // NBD_REP_ERR_* value, high bit set
	Message string // server's optional text
}

func (e *OptionError) Error() string {
	msg := ""
	if e.Message != "" {
		msg = ": " + e.Message
	}
	return fmt.Sprintf("nbdclient: option %d refused with %s%s", e.Option, repName(e.Reply), msg)
}

// Is lets errors.Is(err, ErrUnknownExport) match NBD_REP_ERR_UNKNOWN.
func (e *OptionError) Is(target error) bool {
	return target == ErrUnknownExport && e.Reply == repFlagError|6
}

func repName(r uint32) string {
	names := map[uint32]string{
		repFlagError | 1: "NBD_REP_ERR_UNSUP",
		repFlagError | 2: "NBD_REP_ERR_POLICY",
		repFlagError | 3: "NBD_REP_ERR_INVALID",
		repFlagError | 4: "NBD_REP_ERR_PLATFORM",
		repFlagError | 5: "NBD_REP_ERR_TLS_REQD",
		repFlagError | 6: "NBD_REP_ERR_UNKNOWN",
		repFlagError | 7: "NBD_REP_ERR_SHUTDOWN",
		repFlagError | 8: "NBD_REP_ERR_BLOCK_SIZE_REQD",
		repFlagError | 9: "NBD_REP_ERR_TOO_BIG",
	}
	if n, ok := names[r]; ok {
		return n
	}
	return fmt.Sprintf("reply %#x", r)
}

// Handshake negotiates export name on conn and leaves conn in the
// transmission phase. If ctx has a deadline, or is cancelled, the
// connection's deadline is set so that blocked reads return; the deadline is
// cleared again before Handshake returns.
func Handshake(ctx context.Context, conn net.Conn, name string) (*Export, error) {
	if len(name) > maxNameLength {
		return nil, fmt.Errorf("nbdclient: export name is %d bytes, the limit is %d", len(name), maxNameLength)
	}
	stop := watchContext(ctx, conn)
	exp, err := handshake(conn, name)
	if serr := stop(); serr != nil && err == nil {
		err = serr
	}
	if err != nil && ctx.Err() != nil {
		return nil, fmt.Errorf("nbdclient: handshake for export %q: %w (%w)", name, ctx.Err(), err)
	}
	if err != nil {
		return nil, fmt.Errorf("nbdclient: handshake for export %q: %w", name, err)
	}
	return exp, nil
}

// watchContext arranges for conn's I/O to fail once ctx is done. The
// returned function stops watching and clears the deadline.
func watchContext(ctx context.Context, conn net.Conn) func() error {
	if d, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(d)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	return func() error {
		if !stop() && ctx.Err() != nil {
			return ctx.Err()
		}
		return conn.SetDeadline(time.Time{})
	}
}

func handshake(rw io.ReadWriter, name string) (*Export, error) {
	var greet [18]byte
	if _, err := io.ReadFull(rw, greet[:]); err != nil {
		return nil, fmt.Errorf("reading server greeting: %w", err)
	}
	if binary.BigEndian.Uint64(greet[0:]) != magicNBD || binary.BigEndian.Uint64(greet[8:]) != magicIHaveOpt {
		return nil, ErrNotNBD
	}
	hflags := binary.BigEndian.Uint16(greet[16:])
	if hflags&flagFixedNew == 0 {
		return nil, ErrNotNBD
	}
	cflags := uint32(flagFixedNew)
	if hflags&flagNoZeroes != 0 {
		cflags |= flagNoZeroes
	}
	if err := binary.Write(rw, binary.BigEndian, cflags); err != nil {
		return nil, fmt.Errorf("sending client flags: %w", err)
	}

	exp, err := negotiateGo(rw, name)
	var oe *OptionError
	if errors.As(err, &oe) && oe.Reply == repErrUnsup {
		return negotiateExportName(rw, name, cflags&flagNoZeroes != 0)
	}
	return exp, err
}

// sendOption writes one option request.
func sendOption(w io.Writer, opt uint32, data []byte) error {
	b := make([]byte, 16, 16+len(data))
	binary.BigEndian.PutUint64(b[0:], magicIHaveOpt)
	binary.BigEndian.PutUint32(b[8:], opt)
	binary.BigEndian.PutUint32(b[12:], uint32(len(data)))
	b = append(b, data...)
	if _, err := w.Write(b); err != nil {
		return fmt.Errorf("sending option %d: %w", opt, err)
	}
	return nil
}

// negotiateGo runs NBD_OPT_GO.
func negotiateGo(rw io.ReadWriter, name string) (*Export, error) {
	data := make([]byte, 0, 4+len(name)+2+4)
	data = binary.BigEndian.AppendUint32(data, uint32(len(name)))
	data = append(data, name...)
	data = binary.BigEndian.AppendUint16(data, 2)
	data = binary.BigEndian.AppendUint16(data, infoExport)
	data = binary.BigEndian.AppendUint16(data, infoBlockSize)
	if err := sendOption(rw, optGo, data); err != nil {
		return nil, err
	}
	exp := &Export{Name: name}
	gotExport := false
	for range maxInfoReplies {
		typ, payload, err := readReply(rw, optGo)
		if err != nil {
			return nil, err
		}
		switch {
		case typ == repAck:
			if !gotExport {
				return nil, fmt.Errorf("%w: NBD_REP_ACK to NBD_OPT_GO without NBD_INFO_EXPORT", ErrProtocol)
			}
			return exp, nil
		case typ == repInfo:
			if err := parseInfo(exp, payload, &gotExport); err != nil {
				return nil, err
			}
		case typ&repFlagError != 0:
			return nil, &OptionError{Option: optGo, Reply: typ, Message: string(payload)}
		default:
			// Unknown non-error replies must be ignored (proto.md).
		}
	}
	return nil, fmt.Errorf("%w: more than %d replies to NBD_OPT_GO", ErrProtocol, maxInfoReplies)
}

// parseInfo applies one NBD_REP_INFO payload to exp.
func parseInfo(exp *Export, p []byte, gotExport *bool) error {
	if len(p) < 2 {
		return fmt.Errorf("%w: NBD_REP_INFO of %d bytes", ErrProtocol, len(p))
	}
	switch binary.BigEndian.Uint16(p) {
	case infoExport:
		if len(p) != 12 {
			return fmt.Errorf("%w: NBD_INFO_EXPORT of %d bytes, want 12", ErrProtocol, len(p))
		}
		exp.Size = binary.BigEndian.Uint64(p[2:])
		if exp.Size > MaxExportSize {
			return fmt.Errorf("%w: export size %d exceeds %d", ErrProtocol, exp.Size, uint64(MaxExportSize))
		}
		exp.Flags = binary.BigEndian.Uint16(p[10:])
		*gotExport = true
	case infoBlockSize:
		if len(p) != 14 {
			return fmt.Errorf("%w: NBD_INFO_BLOCK_SIZE of %d bytes, want 14", ErrProtocol, len(p))
		}
		bs := BlockSize{
			Minimum:   binary.BigEndian.Uint32(p[2:]),
			Preferred: binary.BigEndian.Uint32(p[6:]),
			Maximum:   binary.BigEndian.Uint32(p[10:]),
		}
		if !validBlockSize(bs) {
			return fmt.Errorf("%w: NBD_INFO_BLOCK_SIZE %+v", ErrProtocol, bs)
		}
		exp.BlockSize = bs
	}
	return nil
}

// validBlockSize applies the constraints of proto.md: minimum a power of two
// from 1 to 64 KiB, preferred a power of two at least the minimum and at
// least 512, maximum a multiple of the minimum.
func validBlockSize(bs BlockSize) bool {
	pow2 := func(v uint32) bool { return v != 0 && v&(v-1) == 0 }
	return pow2(bs.Minimum) && bs.Minimum <= 64<<10 &&
		pow2(bs.Preferred) && bs.Preferred >= bs.Minimum && bs.Preferred >= 512 &&
		bs.Maximum >= bs.Preferred && bs.Maximum%bs.Minimum == 0
}

// readReply reads one option reply to opt and returns its type and payload.
func readReply(r io.Reader, opt uint32) (uint32, []byte, error) {
	var h [20]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, nil, fmt.Errorf("reading reply to option %d: %w", opt, err)
	}
	if binary.BigEndian.Uint64(h[0:]) != magicOptReply {
		return 0, nil, fmt.Errorf("%w: bad option reply magic %#x", ErrProtocol, binary.BigEndian.Uint64(h[0:]))
	}
	if got := binary.BigEndian.Uint32(h[8:]); got != opt {
		return 0, nil, fmt.Errorf("%w: reply for option %d while waiting for %d", ErrProtocol, got, opt)
	}
	typ := binary.BigEndian.Uint32(h[12:])
	n := binary.BigEndian.Uint32(h[16:])
	if n > MaxReplyLength {
		return 0, nil, fmt.Errorf("%w: option reply of %d bytes exceeds %d", ErrProtocol, n, MaxReplyLength)
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(r, p); err != nil {
		return 0, nil, fmt.Errorf("reading %d-byte reply to option %d: %w", n, opt, err)
	}
	return typ, p, nil
}

// negotiateExportName runs the legacy NBD_OPT_EXPORT_NAME, for servers without
// NBD_OPT_GO. The server closes the connection for an unknown export.
func negotiateExportName(rw io.ReadWriter, name string, noZeroes bool) (*Export, error) {
	if err := sendOption(rw, optExportName, []byte(name)); err != nil {
		return nil, err
	}
	n := 10
	if !noZeroes {
		n += exportNameZero
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(rw, b); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%w (server closed the connection after NBD_OPT_EXPORT_NAME)", ErrUnknownExport)
		}
		return nil, fmt.Errorf("reading NBD_OPT_EXPORT_NAME reply: %w", err)
	}
	if size := binary.BigEndian.Uint64(b); size > MaxExportSize {
		return nil, fmt.Errorf("%w: export size %d exceeds %d", ErrProtocol, size, uint64(MaxExportSize))
	}
	return &Export{
		Name:           name,
		Size:           binary.BigEndian.Uint64(b),
		Flags:          binary.BigEndian.Uint16(b[8:]),
		UsedExportName: true,
	}, nil
}

// Abort sends NBD_OPT_ABORT, ending a negotiation politely. It is meant for
// a connection on which [Handshake] failed with an [OptionError]; callers
// close the connection afterwards either way.
func Abort(w io.Writer) error {
	return sendOption(w, optAbort, nil)
}
