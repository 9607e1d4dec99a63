package nbd

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/mdlayher/vsock"
)

// Defaults for Options fields left zero.
const (
	DefaultHandshakeTimeout = 10 * time.Second
	DefaultWorkers          = 16
	DefaultMaxBlockSize     = 32 << 20
)

// Export is one named device a Server offers.
type Export struct {
	// Name is what clients ask for (NBD_OPT_GO, NBD_OPT_EXPORT_NAME);
	// at most 4096 bytes.
	Name string
	// Description is sent as NBD_INFO_DESCRIPTION when asked for.
	Description string
	// Backend holds the data, typically a *File.
	Backend Backend
	// ReadOnly exports advertise NBD_FLAG_READ_ONLY and fail writes,
	// trims and write-zeroes with EPERM.
	ReadOnly bool
	// PeerCIDs, if not empty, binds the export to the vsock peers with
	// these context IDs (the enclaves this parent started): to any other
	// peer, including every TCP or unix socket peer, which has no CID to
	// check, the export does not exist. It is left out of NBD_OPT_LIST
	// and NBD_OPT_GO, NBD_OPT_INFO and NBD_OPT_EXPORT_NAME are answered as
	// for an unknown name. Empty: every peer may use it.
	PeerCIDs []uint32
}

// Options tune a Server; the zero value is usable.
type Options struct {
	// DefaultExport names the export served to clients that ask for the
	// empty name (NBD_OPT_EXPORT_NAME ""). Empty: no default export.
	DefaultExport string
	// HandshakeTimeout bounds the option haggling of each connection.
	HandshakeTimeout time.Duration
	// Workers bounds the requests executing concurrently per connection.
	Workers int
	// MaxBlockSize is the largest READ or WRITE accepted (and advertised
	// in NBD_INFO_BLOCK_SIZE). Larger reads fail with EINVAL; a larger
	// write closes the connection, since its payload cannot be trusted.
	MaxBlockSize uint32
	// Logger receives connection-level events; nil discards them.
	Logger *slog.Logger
	// Metrics, if not nil, counts requests, bytes, errors and latency.
	Metrics *Metrics
}

// A Server serves a fixed set of exports to any number of connections.
// Its methods are safe for concurrent use.
type Server struct {
	exports  map[string]*export
	names    []string // in configuration order, for NBD_OPT_LIST
	def      *export
	opts     Options
	log      *slog.Logger
	bufs     bufPool
	budget   int64 // bytes of request buffers one connection may hold
	minShare int64 // smallest share of budget one request takes
	tune     tuning
}

// tuning turns data-path features off, so that a benchmark can measure
// each against the others in one run (TestVsockBench); the zero value,
// the only one outside tests, is the production path.
type tuning struct {
	noView         bool // cached reads go to workers, not the file's mapping
	noInlineWrite  bool // writes of more than inlineWriteMax go to workers
	noVsockBuffer  bool // vsock keeps the kernel's 256 KiB receive buffer
	noGather       bool // vsock batches are joined by copying, not gathered
	noWaitingSends bool // vsock sends return EAGAIN at once, not wait in the kernel
}

// export is an Export plus what the server derives from it.
type export struct {
	*Export
	size    uint64
	tflags  uint16
	metrics *exportMetrics
}

// NewServer checks the exports and options and returns a Server.
func NewServer(exports []*Export, opts Options) (*Server, error) {
	if opts.HandshakeTimeout <= 0 {
		opts.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if opts.Workers <= 0 {
		opts.Workers = DefaultWorkers
	}
	if opts.MaxBlockSize == 0 {
		opts.MaxBlockSize = DefaultMaxBlockSize
	}
	if opts.MaxBlockSize < 4096 {
		return nil, fmt.Errorf("nbd: max block size %d is below 4096", opts.MaxBlockSize)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		exports: make(map[string]*export, len(exports)),
		opts:    opts,
		log:     log,
		bufs:    newBufPool(int(opts.MaxBlockSize)),
		budget:  max(64<<20, 2*int64(opts.MaxBlockSize)),
	}
	s.minShare = s.budget / int64(opts.Workers)
	if len(exports) == 0 {
		return nil, errors.New("nbd: no exports")
	}
	for _, e := range exports {
		switch {
		case e == nil || e.Backend == nil:
			return nil, fmt.Errorf("nbd: export %q has no backend", exportName(e))
		case len(e.Name) > maxNameLength:
			return nil, fmt.Errorf("nbd: export name longer than %d bytes", maxNameLength)
		case len(e.Description) > maxNameLength:
			return nil, fmt.Errorf("nbd: export %q: description longer than %d bytes", e.Name, maxNameLength)
		case e.Backend.Size() < 0:
			return nil, fmt.Errorf("nbd: export %q: negative size", e.Name)
		case slices.Contains(e.PeerCIDs, cidAny):
			return nil, fmt.Errorf("nbd: export %q: CID %d (VMADDR_CID_ANY) names no peer", e.Name, uint32(cidAny))
		}
		if _, dup := s.exports[e.Name]; dup {
			return nil, fmt.Errorf("nbd: export %q configured twice", e.Name)
		}
		// One descriptor shared by all connections, flushed with
		// fdatasync: a FLUSH on any connection covers writes completed
		// on all of them, so multi-conn is safe for rw exports too.
		tf := uint16(tflagHasFlags | tflagCanMultiConn)
		if e.ReadOnly {
			tf |= tflagReadOnly
		} else {
			tf |= tflagSendFlush | tflagSendFUA | tflagSendTrim | tflagSendWriteZeroes
		}
		x := &export{Export: e, size: uint64(e.Backend.Size()), tflags: tf}
		if opts.Metrics != nil {
			x.metrics = opts.Metrics.forExport(e.Name)
		}
		s.exports[e.Name] = x
		s.names = append(s.names, e.Name)
	}
	if opts.DefaultExport != "" {
		s.def = s.exports[opts.DefaultExport]
		if s.def == nil {
			return nil, fmt.Errorf("nbd: default export %q is not configured", opts.DefaultExport)
		}
	}
	return s, nil
}

func exportName(e *Export) string {
	if e == nil {
		return "<nil>"
	}
	return e.Name
}

// cidAny is VMADDR_CID_ANY, which no peer has.
const cidAny = 0xffffffff

// peer is the other end of a connection, as far as exports care.
type peer struct {
	remote string
	cid    uint32 // vsock context ID; only with vsock
	vsock  bool
}

// peerOf identifies the peer at a connection's remote address.
func peerOf(a net.Addr) peer {
	p := peer{remote: "unknown"}
	if a != nil {
		p.remote = a.String()
	}
	if va, ok := a.(*vsock.Addr); ok {
		p.cid, p.vsock = va.ContextID, true
	}
	return p
}

// allows reports whether e is served to p.
func (e *export) allows(p peer) bool {
	return len(e.PeerCIDs) == 0 || p.vsock && slices.Contains(e.PeerCIDs, p.cid)
}

// lookup finds an export by name; "" means the default export. An export
// bound to other peers is not found: it is logged and counted as refused.
func (s *Server) lookup(name string, p peer) *export {
	e, ok := s.exports[name]
	if !ok && name == "" {
		e = s.def
	}
	if e == nil || e.allows(p) {
		return e
	}
	if p.vsock {
		s.log.Warn("export refused to peer", "export", e.Name, "peer_cid", p.cid, "remote", p.remote, "allowed_cids", e.PeerCIDs)
	} else {
		s.log.Warn("export refused to a peer without a vsock CID", "export", e.Name, "remote", p.remote, "allowed_cids", e.PeerCIDs)
	}
	e.metrics.refused()
	return nil
}

// Serve accepts connections on l and serves each until ctx is cancelled.
// Then it closes l, lets every connection finish the requests it has
// already read (their replies are sent), and returns nil once all
// connections are closed. It returns an error if l fails otherwise
// (after ending the connections it accepted).
// Serve does not close the exports' backends; call Sync (or Close them)
// after Serve returns.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(ctx, func() { l.Close() })
	defer stop()
	var wg sync.WaitGroup
	defer func() {
		cancel() // if the listener failed, end its connections too
		wg.Wait()
	}()
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if isTemporary(err) {
				s.log.Warn("accept failed, retrying", "addr", l.Addr(), "err", err)
				select {
				case <-time.After(100 * time.Millisecond):
					continue
				case <-ctx.Done():
					return nil
				}
			}
			return fmt.Errorf("nbd: accept on %s: %w", l.Addr(), err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.ServeConn(ctx, c); err != nil {
				s.log.Warn("connection ended with error", "remote", c.RemoteAddr(), "err", err)
			}
		}()
	}
}

// isTemporary reports accept errors worth retrying: running out of file
// descriptors, or a peer that gave up before we accepted it.
func isTemporary(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() ||
		errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, syscall.ENOBUFS)
}

// ServeConn runs the handshake and transmission phases on one connection
// and closes it. It returns nil when the client disconnects cleanly
// (NBD_OPT_ABORT, NBD_CMD_DISC) or ctx is cancelled, and an error
// describing protocol violations or I/O failures otherwise.
func (s *Server) ServeConn(ctx context.Context, c net.Conn) error {
	defer c.Close()
	var src io.Reader = c
	if raw, kind := socketOf(c); kind == connVsock {
		if !s.tune.noVsockBuffer {
			// Before the handshake, so that its first replies already
			// grant the client the larger window.
			setVsockBuffer(raw, vsockBufferSize)
		}
		if !s.tune.noWaitingSends {
			if r := waitingSends(raw); r != nil {
				src = r
			}
		}
	}
	p := peerOf(c.RemoteAddr())
	remote := p.remote
	c.SetDeadline(time.Now().Add(s.opts.HandshakeTimeout))
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Now()) })
	br := bufio.NewReaderSize(src, 64<<10)
	e, neg, err := s.handshake(c, br, p)
	stopped := stop()
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("nbd: handshake with %s: %w", remote, err)
	}
	if e == nil || !stopped {
		return nil // client aborted, or we are shutting down
	}
	c.SetDeadline(time.Time{})
	s.log.Info("client attached", "export", e.Name, "remote", remote, "read_only", e.ReadOnly)
	e.metrics.connected(1)
	defer e.metrics.connected(-1)
	err = s.transmit(ctx, c, br, e, neg)
	if err != nil {
		return fmt.Errorf("nbd: export %q, client %s: %w", e.Name, remote, err)
	}
	s.log.Info("client detached", "export", e.Name, "remote", remote)
	return nil
}

// Sync flushes every read-write export's backend.
func (s *Server) Sync() error {
	var errs []error
	for _, name := range s.names {
		if e := s.exports[name]; !e.ReadOnly {
			if err := e.Backend.Sync(); err != nil {
				errs = append(errs, fmt.Errorf("export %q: %w", name, err))
			}
		}
	}
	return errors.Join(errs...)
}

// errProtocol marks violations of the protocol that close the connection.
var errProtocol = errors.New("protocol violation")

// negotiated is what the options haggled for the transmission phase.
type negotiated struct {
	// structured: NBD_OPT_STRUCTURED_REPLY was acknowledged, so reads
	// and block status are answered with structured reply chunks.
	structured bool
	// alloc: base:allocation was selected by NBD_OPT_SET_META_CONTEXT
	// for export allocExport, so NBD_CMD_BLOCK_STATUS is served.
	alloc       bool
	allocExport *export
}

// handshake performs fixed-newstyle negotiation with p. It returns the
// chosen export, or nil if the client aborted.
func (s *Server) handshake(w io.Writer, r *bufio.Reader, p peer) (*export, negotiated, error) {
	var neg negotiated
	e, err := s.options(w, r, p, &neg)
	if e != nil && neg.allocExport != e {
		// Contexts were selected for another export: none apply.
		neg.alloc = false
	}
	return e, neg, err
}

// options runs the option haggling, recording what was agreed in neg.
func (s *Server) options(w io.Writer, r *bufio.Reader, p peer, neg *negotiated) (*export, error) {
	var hello [18]byte
	binary.BigEndian.PutUint64(hello[0:], magicNBD)
	binary.BigEndian.PutUint64(hello[8:], magicIHaveOpt)
	binary.BigEndian.PutUint16(hello[16:], flagFixedNewstyle|flagNoZeroes)
	if _, err := w.Write(hello[:]); err != nil {
		return nil, err
	}
	var cf [4]byte
	if _, err := io.ReadFull(r, cf[:]); err != nil {
		return nil, fmt.Errorf("reading client flags: %w", err)
	}
	clientFlags := binary.BigEndian.Uint32(cf[:])
	if clientFlags&^(flagFixedNewstyle|flagNoZeroes) != 0 {
		return nil, fmt.Errorf("%w: unknown client flags %#x", errProtocol, clientFlags)
	}
	noZeroes := clientFlags&flagNoZeroes != 0

	var hdr [optHeaderSize]byte
	data := make([]byte, 0, 256)
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return nil, fmt.Errorf("reading option: %w", err)
		}
		if m := binary.BigEndian.Uint64(hdr[0:8]); m != magicIHaveOpt {
			return nil, fmt.Errorf("%w: bad option magic %#x", errProtocol, m)
		}
		opt := binary.BigEndian.Uint32(hdr[8:12])
		n := binary.BigEndian.Uint32(hdr[12:16])
		if n > maxOptionLength {
			return nil, fmt.Errorf("%w: option %d carries %d bytes", errProtocol, opt, n)
		}
		if int(n) > cap(data) {
			data = make([]byte, n)
		}
		data = data[:n]
		if _, err := io.ReadFull(r, data); err != nil {
			return nil, fmt.Errorf("reading option %d: %w", opt, err)
		}
		switch opt {
		case optExportName:
			e := s.lookup(string(data), p)
			if e == nil {
				// The spec's answer to an unknown name here: hang up.
				return nil, fmt.Errorf("client asked for unknown export %q", data)
			}
			reply := make([]byte, 10, 10+zeroPadding)
			binary.BigEndian.PutUint64(reply[0:], e.size)
			binary.BigEndian.PutUint16(reply[8:], e.tflags)
			if !noZeroes {
				reply = reply[:10+zeroPadding]
			}
			_, err := w.Write(reply)
			return e, err
		case optAbort:
			// The client may hang up without reading this; ignore errors.
			writeOptReply(w, opt, repAck, nil)
			return nil, nil
		case optList:
			if len(data) != 0 {
				if err := writeOptReply(w, opt, repErrInval, []byte("NBD_OPT_LIST takes no data")); err != nil {
					return nil, err
				}
				continue
			}
			for _, name := range s.names {
				if !s.exports[name].allows(p) {
					continue // not listed: for p it does not exist
				}
				// Name, then the description as the human-readable
				// details the spec allows after it.
				b := binary.BigEndian.AppendUint32(nil, uint32(len(name)))
				b = append(append(b, name...), s.exports[name].Description...)
				if err := writeOptReply(w, opt, repServer, b); err != nil {
					return nil, err
				}
			}
			if err := writeOptReply(w, opt, repAck, nil); err != nil {
				return nil, err
			}
		case optInfo, optGo:
			e, err := s.info(w, opt, data, p)
			if err != nil {
				return nil, err
			}
			if opt == optGo && e != nil {
				return e, nil
			}
		case optStructuredReply:
			typ, msg := uint32(repAck), []byte(nil)
			if len(data) != 0 {
				typ, msg = repErrInval, []byte("NBD_OPT_STRUCTURED_REPLY takes no data")
			} else {
				neg.structured = true
			}
			if err := writeOptReply(w, opt, typ, msg); err != nil {
				return nil, err
			}
		case optListMetaContext, optSetMetaContext:
			if err := s.metaContext(w, opt, data, p, neg); err != nil {
				return nil, err
			}
		default:
			// Includes NBD_OPT_STARTTLS: no TLS, the enclave's only peer
			// is its parent over vsock.
			if err := writeOptReply(w, opt, repErrUnsup, nil); err != nil {
				return nil, err
			}
		}
	}
}

// info answers NBD_OPT_INFO and NBD_OPT_GO. It returns the export when the
// option succeeded, nil when it was answered with an error reply.
func (s *Server) info(w io.Writer, opt uint32, data []byte, p peer) (*export, error) {
	if len(data) < 6 {
		return nil, writeOptReply(w, opt, repErrInval, []byte("short option data"))
	}
	nameLen := uint64(binary.BigEndian.Uint32(data[0:4]))
	if nameLen > uint64(len(data))-6 {
		return nil, writeOptReply(w, opt, repErrInval, []byte("export name overruns option data"))
	}
	name := string(data[4 : 4+nameLen])
	rest := data[4+nameLen:]
	nreq := int(binary.BigEndian.Uint16(rest[0:2]))
	rest = rest[2:]
	if len(rest) != 2*nreq {
		return nil, writeOptReply(w, opt, repErrInval, []byte("information request count does not match option length"))
	}
	e := s.lookup(name, p)
	if e == nil {
		// NBD_REP_ERR_UNKNOWN, not NBD_REP_ERR_POLICY, for an export
		// bound to another peer too: it is not listed to this peer, and
		// POLICY would tell another tenant that the name exists.
		return nil, writeOptReply(w, opt, repErrUnknwn, fmt.Appendf(nil, "no export named %q", name))
	}
	var sent [4]bool
	for i := 0; i < nreq; i++ {
		typ := binary.BigEndian.Uint16(rest[2*i:])
		var b []byte
		switch {
		case typ == infoName && !sent[infoName]:
			b = binary.BigEndian.AppendUint16(nil, infoName)
			b = append(b, e.Name...)
		case typ == infoDescription && !sent[infoDescription] && e.Description != "":
			b = binary.BigEndian.AppendUint16(nil, infoDescription)
			b = append(b, e.Description...)
		case typ == infoBlockSize && !sent[infoBlockSize]:
			b = binary.BigEndian.AppendUint16(nil, infoBlockSize)
			b = binary.BigEndian.AppendUint32(b, 1)
			b = binary.BigEndian.AppendUint32(b, 4096)
			b = binary.BigEndian.AppendUint32(b, s.opts.MaxBlockSize)
		default:
			continue // unknown or repeated requests are ignored
		}
		sent[typ] = true
		if err := writeOptReply(w, opt, repInfo, b); err != nil {
			return nil, err
		}
	}
	b := binary.BigEndian.AppendUint16(nil, infoExport)
	b = binary.BigEndian.AppendUint64(b, e.size)
	b = binary.BigEndian.AppendUint16(b, e.tflags)
	if err := writeOptReply(w, opt, repInfo, b); err != nil {
		return nil, err
	}
	return e, writeOptReply(w, opt, repAck, nil)
}

// metaContext answers NBD_OPT_LIST_META_CONTEXT and
// NBD_OPT_SET_META_CONTEXT. The only context is base:allocation. Every
// length in data is checked against what is left of data before use.
func (s *Server) metaContext(w io.Writer, opt uint32, data []byte, p peer, neg *negotiated) error {
	if opt == optSetMetaContext {
		neg.alloc, neg.allocExport = false, nil // a SET replaces earlier ones
	}
	if !neg.structured {
		return writeOptReply(w, opt, repErrInval, []byte("negotiate NBD_OPT_STRUCTURED_REPLY first"))
	}
	name, queries, ok := parseMetaContext(data)
	if !ok {
		return writeOptReply(w, opt, repErrInval, []byte("malformed meta context request"))
	}
	e := s.lookup(string(name), p)
	if e == nil {
		return writeOptReply(w, opt, repErrUnknwn, fmt.Appendf(nil, "no export named %q", name))
	}
	match := len(queries) == 0 && opt == optListMetaContext // list all
	for q := queries; len(q) > 0; {
		n := binary.BigEndian.Uint32(q)
		query := string(q[4 : 4+n])
		q = q[4+n:]
		match = match || query == metaBaseAllocation || opt == optListMetaContext && query == "base:"
	}
	if match {
		if opt == optSetMetaContext {
			neg.alloc, neg.allocExport = true, e
		}
		b := binary.BigEndian.AppendUint32(nil, metaBaseID)
		if err := writeOptReply(w, opt, repMetaCtx, append(b, metaBaseAllocation...)); err != nil {
			return err
		}
	}
	return writeOptReply(w, opt, repAck, nil)
}

// parseMetaContext splits a meta context option's data into the export
// name and the queries, still length-prefixed but checked to fill the
// rest of data exactly, each at most maxNameLength bytes.
func parseMetaContext(data []byte) (name, queries []byte, ok bool) {
	if len(data) < 8 {
		return nil, nil, false
	}
	nameLen := uint64(binary.BigEndian.Uint32(data[0:4]))
	if nameLen > maxNameLength || nameLen > uint64(len(data))-8 {
		return nil, nil, false
	}
	name = data[4 : 4+nameLen]
	rest := data[4+nameLen:]
	count := uint64(binary.BigEndian.Uint32(rest[0:4]))
	queries = rest[4:]
	if count > uint64(len(queries))/4 {
		return nil, nil, false
	}
	q := queries
	for range count {
		if len(q) < 4 {
			return nil, nil, false
		}
		n := uint64(binary.BigEndian.Uint32(q))
		if n > maxNameLength || n > uint64(len(q))-4 {
			return nil, nil, false
		}
		q = q[4+n:]
	}
	if len(q) != 0 {
		return nil, nil, false
	}
	return name, queries, true
}

// writeOptReply sends one fixed-newstyle option reply.
func writeOptReply(w io.Writer, opt, typ uint32, data []byte) error {
	b := make([]byte, 20, 20+len(data))
	binary.BigEndian.PutUint64(b[0:], magicOptReply)
	binary.BigEndian.PutUint32(b[8:], opt)
	binary.BigEndian.PutUint32(b[12:], typ)
	binary.BigEndian.PutUint32(b[16:], uint32(len(data)))
	_, err := w.Write(append(b, data...))
	return err
}
