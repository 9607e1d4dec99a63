package nbd

import (
	"encoding/binary"
	"fmt"
)

// Wire constants from the NBD protocol specification (doc/proto.md).
const (
	magicNBD         = 0x4e42444d41474943 // "NBDMAGIC"
	magicIHaveOpt    = 0x49484156454f5054 // "IHAVEOPT"
	magicOptReply    = 0x0003e889045565a9
	magicRequest     = 0x25609513
	magicSimpleReply = 0x67446698
	magicStructReply = 0x668e33ef

	// Handshake flags (server) and client flags share these bits.
	flagFixedNewstyle = 1 << 0
	flagNoZeroes      = 1 << 1

	optExportName      = 1
	optAbort           = 2
	optList            = 3
	optStartTLS        = 5
	optInfo            = 6
	optGo              = 7
	optStructuredReply = 8
	optListMetaContext = 9
	optSetMetaContext  = 10

	repAck       = 1
	repServer    = 2
	repInfo      = 3
	repMetaCtx   = 4
	repErr       = 1 << 31
	repErrUnsup  = repErr | 1
	repErrPolicy = repErr | 2
	repErrInval  = repErr | 3
	repErrUnknwn = repErr | 6

	infoExport      = 0
	infoName        = 1
	infoDescription = 2
	infoBlockSize   = 3

	// Transmission flags.
	tflagHasFlags        = 1 << 0
	tflagReadOnly        = 1 << 1
	tflagSendFlush       = 1 << 2
	tflagSendFUA         = 1 << 3
	tflagSendTrim        = 1 << 5
	tflagSendWriteZeroes = 1 << 6
	tflagCanMultiConn    = 1 << 8

	cmdRead        = 0
	cmdWrite       = 1
	cmdDisc        = 2
	cmdFlush       = 3
	cmdTrim        = 4
	cmdWriteZeroes = 6
	cmdBlockStatus = 7

	cmdFlagFUA    = 1 << 0
	cmdFlagNoHole = 1 << 1
	cmdFlagReqOne = 1 << 3

	// Structured reply chunks (NBD_OPT_STRUCTURED_REPLY).
	chunkFlagDone    = 1 << 0
	chunkNone        = 0
	chunkOffsetData  = 1
	chunkBlockStatus = 5
	chunkError       = 1<<15 | 1

	// The one metadata context served, and its ID on every connection.
	metaBaseAllocation = "base:allocation"
	metaBaseID         = 1
	stateHole          = 1 << 0
	stateZero          = 1 << 1

	errPerm   = 1
	errIO     = 5
	errNoMem  = 12
	errInval  = 22
	errNoSpc  = 28
	errNotSup = 95

	requestSize   = 28
	replySize     = 16
	chunkSize     = 20 // structured reply chunk header
	readChunkSize = chunkSize + 8
	errChunkSize  = chunkSize + 6
	optHeaderSize = 16
	zeroPadding   = 124

	// maxOptionLength bounds an option's payload. The longest legitimate
	// options are NBD_OPT_GO/INFO (a 4096-byte name plus a few info
	// requests) and NBD_OPT_{LIST,SET}_META_CONTEXT (a name plus a few
	// queries; this server knows one context, so 8 KiB of queries is
	// plenty).
	maxOptionLength = 4 + 4096 + 4 + 8<<10
	maxNameLength   = 4096
)

// request is one decoded transmission-phase request header.
type request struct {
	flags  uint16
	typ    uint16
	cookie uint64
	offset uint64
	length uint32
}

// parseRequest decodes a 28-byte request header. It only checks the magic;
// semantic checks (bounds, flags, sizes) belong to the caller, which answers
// them with an error reply instead of closing the connection.
func parseRequest(b []byte) (request, error) {
	if len(b) < requestSize {
		return request{}, fmt.Errorf("nbd: short request header (%d bytes)", len(b))
	}
	if m := binary.BigEndian.Uint32(b[0:4]); m != magicRequest {
		return request{}, fmt.Errorf("nbd: bad request magic %#08x", m)
	}
	return request{
		flags:  binary.BigEndian.Uint16(b[4:6]),
		typ:    binary.BigEndian.Uint16(b[6:8]),
		cookie: binary.BigEndian.Uint64(b[8:16]),
		offset: binary.BigEndian.Uint64(b[16:24]),
		length: binary.BigEndian.Uint32(b[24:28]),
	}, nil
}

// putReply writes a simple reply header into b[:16].
func putReply(b []byte, errno uint32, cookie uint64) {
	binary.BigEndian.PutUint32(b[0:4], magicSimpleReply)
	binary.BigEndian.PutUint32(b[4:8], errno)
	binary.BigEndian.PutUint64(b[8:16], cookie)
}

// putChunk writes a structured reply chunk header into b[:20].
func putChunk(b []byte, flags, typ uint16, cookie uint64, length uint32) {
	binary.BigEndian.PutUint32(b[0:4], magicStructReply)
	binary.BigEndian.PutUint16(b[4:6], flags)
	binary.BigEndian.PutUint16(b[6:8], typ)
	binary.BigEndian.PutUint64(b[8:16], cookie)
	binary.BigEndian.PutUint32(b[16:20], length)
}

// putErrorChunk writes a final NBD_REPLY_TYPE_ERROR chunk without a
// message into b[:errChunkSize].
func putErrorChunk(b []byte, errno uint32, cookie uint64) {
	putChunk(b, chunkFlagDone, chunkError, cookie, 6)
	binary.BigEndian.PutUint32(b[chunkSize:], errno)
	binary.BigEndian.PutUint16(b[chunkSize+4:], 0)
}

// commandName names a command type for logs and metrics labels.
func commandName(t uint16) string {
	switch t {
	case cmdRead:
		return "read"
	case cmdWrite:
		return "write"
	case cmdDisc:
		return "disc"
	case cmdFlush:
		return "flush"
	case cmdTrim:
		return "trim"
	case cmdWriteZeroes:
		return "write_zeroes"
	case cmdBlockStatus:
		return "block_status"
	default:
		return "other"
	}
}

// commands lists the metric label values, indexed by opIndex.
var commands = [...]string{"read", "write", "flush", "trim", "write_zeroes", "block_status", "other"}

// opIndex maps a command type to its index in commands.
func opIndex(t uint16) int {
	switch t {
	case cmdRead:
		return 0
	case cmdWrite:
		return 1
	case cmdFlush:
		return 2
	case cmdTrim:
		return 3
	case cmdWriteZeroes:
		return 4
	case cmdBlockStatus:
		return 5
	default:
		return 6
	}
}
