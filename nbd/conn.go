package nbd

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sync/semaphore"
)

// inlineWriteMax is the largest write the reader executes itself on a
// backend that takes concurrent writes (a block device); a regular file
// takes writes of any size on the reader (see inlineWriter).
const inlineWriteMax = 16 << 10

// inlineWriter is implemented by backends (File) that can take a write
// from the connection's reader without waiting behind other writes.
// A write into the page cache costs less than handing it to a worker and
// waking a thread for it: with 4 KiB random writes, 32 in flight, the
// hand-offs made one to four context switches per request, nbdkit's
// threads a fifth of one; with sequential 1 MiB writes on TCP loopback,
// writing on the reader took a quarter less server CPU per GiB than
// workers did. The kernel serializes buffered writes to one file anyway,
// so workers gained no parallelism there; what the reader gives up is
// reading the next request while it writes.
type inlineWriter interface {
	tryWriteAt(p []byte, off int64) (bool, error)
}

// maxQueued bounds the bytes of replies the reader may queue before it
// must write them itself.
const maxQueued = 8 << 20

// viewer is implemented by backends (File on Linux) that can lend the
// bytes of a cached range without copying them (see mapping): the reader
// answers such reads itself, and the writer sends the data from the view.
type viewer interface {
	view(off, n int64) []byte // pinned, or nil if not all cached
	unpin()
}

// rangeSender is implemented by backends (File on Linux) that can send a
// range straight to a socket (sendfile).
type rangeSender interface {
	sendRange(rc syscall.RawConn, off, n int64) error
}

// shutdownWriteGrace bounds how long replies still queued at shutdown may
// take to reach a client that has stopped reading.
const shutdownWriteGrace = 5 * time.Second

// session is the transmission phase of one connection.
type session struct {
	s   *Server
	e   *export
	nc  net.Conn
	sem *semaphore.Weighted
	wg  sync.WaitGroup

	// Replies are queued and written in batches: the worker that finds
	// no writer active becomes it and writes everything queued (one
	// writev on TCP and unix sockets) until the queue is empty. Under
	// load this turns many small replies into one system call.
	wmu     sync.Mutex
	queue   []pending
	writing bool
	queued  int   // bytes in queue
	werr    error // first reply write error; later replies are dropped
	idle    *sync.Cond
	iov     net.Buffers
	raw     syscall.RawConn // for sendfile; nil on other connections
	gather  syscall.RawConn // sockets written with one sendmsg per batch; nil on others

	// With structured replies negotiated, reads are answered with one
	// NBD_REPLY_TYPE_OFFSET_DATA chunk (header rhdr bytes, else a simple
	// reply's 16) and errors to reads and block status with an error
	// chunk; alloc enables NBD_CMD_BLOCK_STATUS for base:allocation.
	structured, alloc bool
	rhdr              int
}

// pending is a reply waiting to be written and what to free after it.
type pending struct {
	reply, payload *buffer
	share          int64 // budget to release; 0 for replies built by the reader
	// A read answered from a view: reply holds the header only and the
	// writer sends data, a view of src, after it, then unpins it.
	data []byte
	src  viewer
	// A read answered by sendfile: reply holds the header only and the
	// writer sends [off, off+n) of the backend after it.
	send   rangeSender
	off, n int64
}

// transmit reads requests until the client disconnects, the connection
// fails or ctx is cancelled, executing them concurrently. It returns after
// every request it read has been answered (or the connection died).
func (s *Server) transmit(ctx context.Context, nc net.Conn, br *bufio.Reader, e *export, neg negotiated) error {
	ss := &session{s: s, e: e, nc: nc, sem: semaphore.NewWeighted(s.budget),
		structured: neg.structured, alloc: neg.alloc, rhdr: replySize}
	if ss.structured {
		ss.rhdr = readChunkSize
	}
	ss.idle = sync.NewCond(&ss.wmu)
	stop := context.AfterFunc(ctx, func() {
		// Stop reading new requests; let queued replies drain.
		nc.SetReadDeadline(time.Now())
		nc.SetWriteDeadline(time.Now().Add(shutdownWriteGrace))
	})
	defer stop()
	err := ss.readLoop(br)
	ss.wg.Wait()
	ss.flush(true) // replies the reader queued, e.g. before NBD_CMD_DISC
	if ctx.Err() != nil {
		return nil
	}
	if err == nil {
		ss.wmu.Lock()
		err = ss.werr
		ss.wmu.Unlock()
	}
	return err
}

// readLoop decodes requests, answers malformed ones and hands the rest to
// workers. It returns nil on NBD_CMD_DISC or a clean EOF between requests.
func (ss *session) readLoop(br *bufio.Reader) error {
	e := ss.e
	maxLen := ss.s.opts.MaxBlockSize
	var hdr [requestSize]byte
	// Reads of cached data skip the workers: the reader queues the reply
	// header and the writer sends the data from the backend's view of
	// the page cache, or on unix sockets with sendfile, whose pages the
	// receiver then copies from directly (on TCP loopback, a copy from
	// the mapping cost less than sendfile's page-by-page socket buffers).
	// Only for ranges fully in the page cache, so the writer never waits
	// for storage; other reads go to workers.
	viewer, _ := e.Backend.(viewer)
	sender, _ := e.Backend.(rangeSender)
	raw, kind := socketOf(ss.nc)
	if ss.s.tune.noView {
		viewer = nil
	}
	if kind != connUnix {
		sender = nil
	}
	ss.raw, ss.gather = raw, raw
	if kind == connVsock && ss.s.tune.noGather {
		ss.gather = nil
	}
	// On TCP, large write payloads are read with SO_RCVLOWAT raised so
	// the reader wakes once per big chunk instead of once per segment.
	var lowat syscall.RawConn
	if kind == connTCP {
		lowat = raw
	}
	for {
		if br.Buffered() < requestSize {
			ss.flush(false) // about to block: send what the reader queued
		}
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("reading request: %w", err)
		}
		req, err := parseRequest(hdr[:])
		if err != nil {
			return err
		}
		op := opIndex(req.typ)
		end := req.offset + uint64(req.length)
		inBounds := end >= req.offset && end <= e.size

		switch req.typ {
		case cmdDisc:
			return nil
		case cmdWrite:
			if req.length > maxLen {
				// Reading a payload we will not use only helps an
				// attacker; the spec allows a hard disconnect.
				return fmt.Errorf("%w: write of %d bytes exceeds the %d-byte limit", errProtocol, req.length, maxLen)
			}
			n := int64(req.length)
			ss.sem.Acquire(context.Background(), max(n, ss.s.minShare))
			buf := ss.s.bufs.get(int(req.length))
			if err := ss.readPayload(br, buf.b, lowat); err != nil {
				ss.release(buf, n)
				return fmt.Errorf("reading write payload: %w", err)
			}
			switch {
			case e.ReadOnly:
				ss.release(buf, n)
				ss.fail(req, op, errPerm)
			case req.flags&^cmdFlagFUA != 0:
				ss.release(buf, n)
				ss.fail(req, op, errInval)
			case !inBounds:
				ss.release(buf, n)
				ss.fail(req, op, errNoSpc)
			case req.flags == 0 && (n <= inlineWriteMax || !ss.s.tune.noInlineWrite) && ss.writeInline(req, op, buf, n):
			default:
				ss.start(req, op, buf, n)
			}
			continue
		}

		var errno uint32
		switch req.typ {
		case cmdRead:
			switch {
			case req.flags&^cmdFlagFUA != 0:
				errno = errInval
			case req.length > maxLen:
				// EINVAL, not EOVERFLOW: the spec keeps EOVERFLOW for
				// structured reads with NBD_CMD_FLAG_DF.
				errno = errInval
			case !inBounds:
				errno = errInval
			}
		case cmdBlockStatus:
			switch {
			case !ss.alloc:
				errno = errInval // no context negotiated: not a command
			case req.flags&^cmdFlagReqOne != 0, req.length == 0, !inBounds:
				errno = errInval
			}
		case cmdFlush:
			if req.flags&^cmdFlagFUA != 0 || req.offset != 0 || req.length != 0 {
				errno = errInval
			}
		case cmdTrim, cmdWriteZeroes:
			allowed := uint16(cmdFlagFUA)
			if req.typ == cmdWriteZeroes {
				allowed |= cmdFlagNoHole
			}
			switch {
			case e.ReadOnly:
				errno = errPerm
			case req.flags&^allowed != 0:
				errno = errInval
			case !inBounds && req.typ == cmdWriteZeroes:
				errno = errNoSpc
			case !inBounds:
				errno = errInval
			}
		default:
			errno = errInval // NBD_CMD_CACHE, ...: not advertised
		}
		if errno != 0 {
			ss.fail(req, op, errno)
			continue
		}
		var n int64
		if req.typ == cmdRead {
			n = int64(req.length)
			if viewer != nil {
				if data := viewer.view(int64(req.offset), n); data != nil {
					reply := ss.s.bufs.get(ss.rhdr)
					ss.putRead(reply, req)
					ss.e.metrics.observe(op, n, 0, 0)
					p := pending{reply: reply, data: data, src: viewer}
					if sender != nil {
						viewer.unpin()
						p = pending{reply: reply, send: sender, off: int64(req.offset), n: n}
					}
					ss.enqueue(p)
					continue
				}
			}
		}
		ss.sem.Acquire(context.Background(), max(n, ss.s.minShare))
		ss.start(req, op, nil, n)
	}
}

// writeInline executes a small write without FUA on the reader when the
// backend can take it at once (inlineWriter), queues its reply and
// releases buf and its share n. It reports false, having done nothing,
// when the write must go to a worker.
func (ss *session) writeInline(req request, op int, buf *buffer, n int64) bool {
	w, ok := ss.e.Backend.(inlineWriter)
	if !ok {
		return false
	}
	t0 := time.Now()
	done, err := w.tryWriteAt(buf.b, int64(req.offset))
	if !done {
		return false
	}
	errno := ss.errno(req, err)
	ss.e.metrics.observe(op, n, errno, time.Since(t0))
	ss.release(buf, n)
	reply := ss.s.bufs.get(replySize)
	putReply(reply.b, errno, req.cookie)
	ss.enqueue(pending{reply: reply})
	return true
}

// release returns a payload buffer and its share of the budget.
func (ss *session) release(b *buffer, n int64) {
	if b != nil {
		ss.s.bufs.put(b)
	}
	ss.sem.Release(max(n, ss.s.minShare))
}

// fail answers a request the reader rejected.
func (ss *session) fail(req request, op int, errno uint32) {
	ss.e.metrics.observe(op, 0, errno, 0)
	b := ss.s.bufs.get(errChunkSize)
	ss.putError(b, errno, req)
	ss.enqueue(pending{reply: b})
}

// putError turns b (at least errChunkSize long) into the error reply to
// req: an error chunk where the client expects a structured reply (reads
// and block status once negotiated), a simple reply otherwise.
func (ss *session) putError(b *buffer, errno uint32, req request) {
	if ss.structured && (req.typ == cmdRead || req.typ == cmdBlockStatus) {
		b.b = b.b[:errChunkSize]
		putErrorChunk(b.b, errno, req.cookie)
		return
	}
	b.b = b.b[:replySize]
	putReply(b.b, errno, req.cookie)
}

// putRead writes the header of a successful read's reply into b, which
// holds ss.rhdr bytes of header then the data. A structured reply is one
// final OFFSET_DATA chunk, or a NONE chunk for a zero-length read (an
// OFFSET_DATA chunk must carry data).
func (ss *session) putRead(b *buffer, req request) {
	switch {
	case !ss.structured:
		putReply(b.b, 0, req.cookie)
	case req.length == 0:
		b.b = b.b[:chunkSize]
		putChunk(b.b, chunkFlagDone, chunkNone, req.cookie, 0)
	default:
		putChunk(b.b, chunkFlagDone, chunkOffsetData, req.cookie, 8+req.length)
		binary.BigEndian.PutUint64(b.b[chunkSize:], req.offset)
	}
}

// start runs one request on a worker goroutine. The caller has acquired
// max(n, minShare) of the budget; the worker releases it. A write's
// payload is in payload.
func (ss *session) start(req request, op int, payload *buffer, n int64) {
	ss.wg.Add(1)
	go func() {
		defer ss.wg.Done()
		t0 := time.Now()
		errno, reply := ss.execute(req, payload)
		ss.e.metrics.observe(op, n, errno, time.Since(t0))
		ss.send(pending{reply: reply, payload: payload, share: max(n, ss.s.minShare)})
	}()
}

// execute performs one validated request and returns the reply to send
// (header, plus data for a successful read) in a pooled buffer.
func (ss *session) execute(req request, payload *buffer) (uint32, *buffer) {
	b := ss.e.Backend
	off := int64(req.offset)
	n := int64(req.length)
	var err error
	switch req.typ {
	case cmdRead:
		reply := ss.s.bufs.get(ss.rhdr + int(n))
		var m int
		m, err = b.ReadAt(reply.b[ss.rhdr:], off)
		if errors.Is(err, io.EOF) {
			// A backend shorter than advertised (a file truncated
			// behind our back): the missing tail reads as zeroes.
			clear(reply.b[ss.rhdr+m:])
			err = nil
		}
		if errno := ss.errno(req, err); errno != 0 {
			reply.b = reply.b[:max(errChunkSize, len(reply.b))] // room for an error chunk
			ss.putError(reply, errno, req)
			return errno, reply
		}
		ss.putRead(reply, req)
		return 0, reply
	case cmdBlockStatus:
		return ss.blockStatus(req)
	case cmdWrite:
		_, err = b.WriteAt(payload.b, off)
	case cmdFlush:
		err = b.Sync()
	case cmdTrim:
		err = b.Trim(off, n)
	case cmdWriteZeroes:
		err = b.Zero(off, n, req.flags&cmdFlagNoHole != 0)
	}
	if err == nil && req.flags&cmdFlagFUA != 0 && req.typ != cmdFlush && req.typ != cmdRead {
		err = b.Sync()
	}
	errno := ss.errno(req, err)
	reply := ss.s.bufs.get(replySize)
	putReply(reply.b, errno, req.cookie)
	return errno, reply
}

// maxExtents bounds the extents of one block status reply (8 KiB), and
// so the SEEK_DATA/SEEK_HOLE calls answering it; a reply may describe
// less than was asked, and the client asks again for the rest.
const maxExtents = 1024

// extentMapper is implemented by backends (File) that know which ranges
// are holes. extents calls emit for consecutive extents from off, in
// order, ending at end or after max extents.
type extentMapper interface {
	extents(off, end int64, limit int, emit func(n int64, hole bool)) error
}

// blockStatus answers NBD_CMD_BLOCK_STATUS for base:allocation with one
// final NBD_REPLY_TYPE_BLOCK_STATUS chunk. Extents end within the
// request; holes are reported as NBD_STATE_HOLE|NBD_STATE_ZERO. Backends
// that cannot tell report all data, which is always correct.
func (ss *session) blockStatus(req request) (uint32, *buffer) {
	limit := maxExtents
	if req.flags&cmdFlagReqOne != 0 {
		limit = 1
	}
	reply := ss.s.bufs.get(chunkSize + 4 + 8*limit)
	b := reply.b[:chunkSize+4]
	emit := func(n int64, hole bool) {
		var flags uint32
		if hole {
			flags = stateHole | stateZero
		}
		b = binary.BigEndian.AppendUint32(b, uint32(n))
		b = binary.BigEndian.AppendUint32(b, flags)
	}
	off, end := int64(req.offset), int64(req.offset)+int64(req.length)
	var err error
	if m, ok := ss.e.Backend.(extentMapper); ok {
		err = m.extents(off, end, limit, emit)
	} else {
		emit(end-off, false)
	}
	if errno := ss.errno(req, err); errno != 0 {
		ss.putError(reply, errno, req)
		return errno, reply
	}
	reply.b = b
	putChunk(b, chunkFlagDone, chunkBlockStatus, req.cookie, uint32(len(b)-chunkSize))
	binary.BigEndian.PutUint32(b[chunkSize:], metaBaseID)
	return 0, reply
}

// errno maps a backend error to an NBD error value and logs it.
func (ss *session) errno(req request, err error) uint32 {
	if err == nil {
		return 0
	}
	ss.s.log.Error("request failed", "export", ss.e.Name, "op", commandName(req.typ),
		"offset", req.offset, "length", req.length, "err", err)
	switch {
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT), errors.Is(err, syscall.EFBIG):
		return errNoSpc
	case errors.Is(err, syscall.ENOMEM):
		return errNoMem
	case errors.Is(err, syscall.EPERM), errors.Is(err, syscall.EROFS), errors.Is(err, syscall.EBADF):
		return errPerm
	case errors.Is(err, syscall.EOPNOTSUPP), errors.Is(err, errors.ErrUnsupported):
		return errNotSup
	default:
		return errIO
	}
}

// enqueue queues a reply built by the reader goroutine without writing
// it, so that the replies to a burst of requests go out together; the
// reader flushes before it blocks for more input, and at once if too much
// is queued.
func (ss *session) enqueue(p pending) {
	ss.wmu.Lock()
	ss.queue = append(ss.queue, p)
	ss.queued += len(p.reply.b) + len(p.data) + int(p.n)
	full := ss.queued > maxQueued
	ss.wmu.Unlock()
	if full {
		ss.flush(true)
	}
}

// flush writes the queue unless another goroutine is already writing
// (it will write what is queued). With wait, it first waits for that
// writer, so the queue has been written when flush returns.
func (ss *session) flush(wait bool) {
	ss.wmu.Lock()
	for wait && ss.writing {
		ss.idle.Wait()
	}
	if ss.writing || len(ss.queue) == 0 {
		ss.wmu.Unlock()
		return
	}
	ss.writeQueue()
}

// send queues a worker's reply and writes the queue unless another
// goroutine is writing it.
func (ss *session) send(p pending) {
	ss.wmu.Lock()
	ss.queue = append(ss.queue, p)
	ss.queued += len(p.reply.b)
	if ss.writing {
		ss.wmu.Unlock()
		return
	}
	ss.writeQueue()
}

// writeQueue, called with wmu held and no writer active, writes the
// queue, including replies queued meanwhile, until it is empty, then
// unlocks wmu. Buffers and budget shares are released once their reply is
// on the wire. After a write error the connection is closed, which also
// stops the reader.
func (ss *session) writeQueue() {
	ss.writing = true
	for len(ss.queue) > 0 {
		batch := ss.queue
		ss.queue = nil
		ss.queued = 0
		failed := ss.werr != nil
		ss.wmu.Unlock()

		if !failed {
			if err := ss.writeBatch(batch); err != nil {
				ss.nc.Close()
				ss.wmu.Lock()
				ss.werr = fmt.Errorf("writing reply: %w", err)
				ss.wmu.Unlock()
			}
		}
		for _, q := range batch {
			if q.src != nil {
				q.src.unpin()
			}
			ss.s.bufs.put(q.reply)
			ss.s.bufs.put(q.payload)
			if q.share > 0 {
				ss.sem.Release(q.share)
			}
		}
		clear(batch)
		ss.wmu.Lock()
		if ss.queue == nil {
			ss.queue = batch[:0] // reuse the slice
		}
	}
	ss.writing = false
	ss.idle.Broadcast()
	ss.wmu.Unlock()
}

// writeBatch writes replies in order: runs of buffers (headers, data
// built or viewed) with one gathering write, each sendfile read's data
// after its header.
func (ss *session) writeBatch(batch []pending) error {
	iov := ss.iov[:0]
	defer func() { clear(iov[:cap(iov)]); ss.iov = iov[:0] }()
	flush := func() error {
		var err error
		switch {
		case len(iov) == 0:
		case ss.gather != nil && len(iov) > 1:
			err = writevRaw(ss.gather, iov)
		case len(iov) == 1:
			_, err = ss.nc.Write(iov[0])
		default:
			err = ss.writeJoined(iov)
		}
		iov = iov[:0]
		return err
	}
	for _, q := range batch {
		iov = append(iov, q.reply.b)
		if q.data != nil {
			iov = append(iov, q.data)
		}
		if q.send == nil {
			continue
		}
		if err := flush(); err != nil {
			return err
		}
		// The header promised n bytes: a failure now must end the
		// connection, which the caller does.
		if err := q.send.sendRange(ss.raw, q.off, q.n); err != nil {
			return err
		}
	}
	return flush()
}

// writeJoined writes buffers on a connection without writev (vsock, or
// any other net.Conn) by copying runs of them into one buffer, so a batch
// of small replies still costs one write.
func (ss *session) writeJoined(iov net.Buffers) error {
	const joinMax = 256 << 10
	for len(iov) > 0 {
		if len(iov[0]) >= joinMax {
			if _, err := ss.nc.Write(iov[0]); err != nil {
				return err
			}
			iov = iov[1:]
			continue
		}
		n, total := 0, 0
		for n < len(iov) && total+len(iov[n]) <= joinMax {
			total += len(iov[n])
			n++
		}
		buf := ss.s.bufs.get(total)
		b := buf.b[:0]
		for _, p := range iov[:n] {
			b = append(b, p...)
		}
		_, err := ss.nc.Write(b)
		ss.s.bufs.put(buf)
		if err != nil {
			return err
		}
		iov = iov[n:]
	}
	return nil
}

// readPayload fills p from the connection. Large payloads on TCP are read
// straight into p with SO_RCVLOWAT raised to what is still missing (at
// most 512 KiB), so the reader wakes once per big chunk rather than once
// per arriving segment; the low-water mark never exceeds what the client
// still owes us, so it cannot stall.
func (ss *session) readPayload(br *bufio.Reader, p []byte, lowat syscall.RawConn) error {
	if lowat == nil || len(p) < 128<<10 {
		_, err := io.ReadFull(br, p)
		return err
	}
	off, _ := br.Read(p[:min(br.Buffered(), len(p))]) // what bufio already holds
	raised := false
	var err error
	for off < len(p) && err == nil {
		if rem := len(p) - off; rem >= 64<<10 {
			raised = setRcvLowat(lowat, min(rem, 512<<10)) || raised
		} else if raised {
			setRcvLowat(lowat, 1)
			raised = false
		}
		var m int
		m, err = ss.nc.Read(p[off:])
		off += m
	}
	if raised {
		setRcvLowat(lowat, 1)
	}
	if err != nil && off < len(p) {
		return err
	}
	return nil
}
