package nbd

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/enclave-storage/enclave-storage/nbd/nbdtest"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestCommands(t *testing.T) {
	f := startFixture(t, Options{MaxBlockSize: 1 << 20}, runSize)
	rw := dial(t, f.tcp, "run")
	ro := dial(t, f.tcp, "image")
	ctx := testCtx(t)
	if rw.Size != runSize || ro.Size != imageSize {
		t.Fatalf("sizes: run %d, image %d", rw.Size, ro.Size)
	}
	if rw.Flags&nbdtest.TFlagReadOnly != 0 || ro.Flags&nbdtest.TFlagReadOnly == 0 {
		t.Fatalf("read-only flags: run %#x, image %#x", rw.Flags, ro.Flags)
	}
	data := randomBytes(t, 64<<10)
	buf := make([]byte, len(data))

	type step struct {
		name string
		c    *nbdtest.Client
		typ  uint16
		fl   uint16
		off  uint64
		n    uint32
		data []byte
		want nbdtest.Errno
	}
	big := uint32(runSize)
	steps := []step{
		{"write", rw, nbdtest.CmdWrite, 0, 4096, uint32(len(data)), data, 0},
		{"write fua", rw, nbdtest.CmdWrite, nbdtest.FlagFUA, 1 << 20, uint32(len(data)), data, 0},
		{"flush", rw, nbdtest.CmdFlush, 0, 0, 0, nil, 0},
		{"flush with fua", rw, nbdtest.CmdFlush, nbdtest.FlagFUA, 0, 0, nil, 0},
		{"read at end", rw, nbdtest.CmdRead, 0, runSize - 4096, 4096, make([]byte, 4096), 0},
		{"zero-length read", rw, nbdtest.CmdRead, 0, runSize, 0, []byte{}, 0},
		{"read past end", rw, nbdtest.CmdRead, 0, runSize - 4096, 8192, nil, 22},
		{"read offset overflow", rw, nbdtest.CmdRead, 0, ^uint64(0) - 100, 4096, nil, 22},
		{"read too large", rw, nbdtest.CmdRead, 0, 0, 2 << 20, nil, 22},
		{"read unknown flag", rw, nbdtest.CmdRead, 1 << 7, 0, 4096, nil, 22},
		{"write past end", rw, nbdtest.CmdWrite, 0, runSize - 100, 4096, make([]byte, 4096), 28},
		{"write bad flags", rw, nbdtest.CmdWrite, nbdtest.FlagNoHole, 0, 4096, make([]byte, 4096), 22},
		{"trim past end", rw, nbdtest.CmdTrim, 0, runSize, 1, nil, 22},
		{"write zeroes past end", rw, nbdtest.CmdWriteZeroes, 0, runSize, 1, nil, 28},
		{"trim larger than max block size", rw, nbdtest.CmdTrim, 0, 2 << 20, big - 2<<20, nil, 0},
		{"cache unsupported", rw, 5, 0, 0, 4096, nil, 22},
		{"block status unsupported", rw, 7, 0, 0, 4096, nil, 22},
		{"unknown command", rw, 200, 0, 0, 0, nil, 22},
		{"ro write", ro, nbdtest.CmdWrite, 0, 0, 4096, make([]byte, 4096), 1},
		{"ro trim", ro, nbdtest.CmdTrim, 0, 0, 4096, nil, 1},
		{"ro write zeroes", ro, nbdtest.CmdWriteZeroes, 0, 0, 4096, nil, 1},
		{"ro read", ro, nbdtest.CmdRead, 0, 0, 4096, make([]byte, 4096), 0},
		{"ro flush", ro, nbdtest.CmdFlush, 0, 0, 0, nil, 0},
	}
	for _, s := range steps {
		err := s.c.Do(ctx, s.typ, s.fl, s.off, s.n, s.data)
		var got nbdtest.Errno
		if err != nil && !errors.As(err, &got) {
			t.Fatalf("%s: %v", s.name, err)
		}
		if got != s.want {
			t.Errorf("%s: error %d, want %d", s.name, got, s.want)
		}
	}
	// The connection survived every error: data written above reads back.
	if err := rw.ReadAt(ctx, buf, 1<<20); err != nil || !bytes.Equal(buf, data) {
		t.Fatalf("read back after errors: %v, equal=%v", err, bytes.Equal(buf, data))
	}
	onDisk, err := os.ReadFile(f.runPath)
	if err != nil {
		t.Fatal(err)
	}
	if len(onDisk) != runSize {
		t.Fatalf("file size changed to %d", len(onDisk))
	}
	if !bytes.Equal(onDisk[1<<20:1<<20+len(data)], data) {
		t.Fatal("FUA write not in the file")
	}
	if err := ro.ReadAt(ctx, buf[:4096], 8192); err != nil || !bytes.Equal(buf[:4096], f.imageBytes[8192:8192+4096]) {
		t.Fatalf("read-only export read: %v", err)
	}
	img, _ := os.ReadFile(f.imagePath)
	if !bytes.Equal(img, f.imageBytes) {
		t.Fatal("read-only image changed")
	}
	// Large reads (sent from the mapping on TCP, with sendfile on unix),
	// interleaved with small ones.
	ux, err := nbdtest.Dial(ctx, "unix", f.unix, "image")
	if err != nil {
		t.Fatal(err)
	}
	defer ux.Close()
	for _, c := range []*nbdtest.Client{ro, ux} {
		errs := make(chan error, 8)
		for i := range 8 {
			go func() {
				n, off := 1<<20, 0
				if i%2 == 1 {
					n, off = 4096+i, 1000*i
				} else if i > 0 {
					n, off = 300<<10, 5000*i
				}
				b := make([]byte, n)
				err := c.ReadAt(ctx, b, uint64(off))
				if err == nil && !bytes.Equal(b, f.imageBytes[off:off+n]) {
					err = errors.New("wrong data")
				}
				errs <- err
			}()
		}
		for range 8 {
			if err := <-errs; err != nil {
				t.Fatalf("large read: %v", err)
			}
		}
	}
}

func TestTrimAndWriteZeroes(t *testing.T) {
	f := startFixture(t, Options{}, runSize)
	c := dial(t, f.tcp, "run")
	ctx := testCtx(t)
	const mib = 1 << 20
	data := bytes.Repeat([]byte{0xa5}, 4*mib)
	if err := c.WriteAt(ctx, data, 0, nbdtest.FlagFUA); err != nil {
		t.Fatal(err)
	}
	blocks := func() int64 {
		var st syscall.Stat_t
		if err := syscall.Stat(f.runPath, &st); err != nil {
			t.Fatal(err)
		}
		return st.Blocks * 512
	}
	full := blocks()
	if full < 4*mib {
		t.Skipf("filesystem under %s does not allocate as expected (%d bytes for 4 MiB)", f.runPath, full)
	}
	tests := []struct {
		name      string
		do        func() error
		off       int64
		allocated bool
	}{
		{"trim punches", func() error { return c.Trim(ctx, 0, mib) }, 0, false},
		{"write zeroes punches", func() error { return c.WriteZeroes(ctx, mib, mib, 0) }, mib, false},
		{"write zeroes no-hole stays allocated", func() error { return c.WriteZeroes(ctx, 2*mib, mib, nbdtest.FlagNoHole|nbdtest.FlagFUA) }, 2 * mib, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := blocks()
			if err := tt.do(); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, mib)
			if err := c.ReadAt(ctx, buf, uint64(tt.off)); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(buf, make([]byte, mib)) {
				t.Fatal("range does not read as zeroes")
			}
			after := blocks()
			if tt.allocated && after < before {
				t.Errorf("NO_HOLE freed space: %d -> %d bytes", before, after)
			}
			if !tt.allocated && after > before-mib/2 {
				t.Errorf("no hole punched: %d -> %d bytes", before, after)
			}
		})
	}
	// The untouched tail is intact.
	buf := make([]byte, mib)
	if err := c.ReadAt(ctx, buf, 3*mib); err != nil || !bytes.Equal(buf, data[:mib]) {
		t.Fatalf("tail changed: %v", err)
	}
}

// TestOutOfOrder blocks a read in the backend and checks that a later
// read on the same connection is answered meanwhile: a server handling
// requests one at a time would never answer it.
func TestOutOfOrder(t *testing.T) {
	entered := make(chan struct{})
	release := make(chan struct{})
	mem := &memBackend{data: randomBytes(t, 1<<20)}
	mem.gate = func(off int64) {
		if off == 0 {
			close(entered)
			<-release
		}
	}
	srv, err := NewServer([]*Export{{Name: "m", Backend: mem}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	addr := serveTCP(t, srv)
	c := dial(t, addr, "m")
	ctx := testCtx(t)
	first := make(chan error, 1)
	buf0 := make([]byte, 4096)
	go func() { first <- c.ReadAt(ctx, buf0, 0) }()
	<-entered
	buf1 := make([]byte, 4096)
	ctx1, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := c.ReadAt(ctx1, buf1, 4096); err != nil {
		close(release)
		t.Fatalf("second read while the first is blocked: %v (requests handled sequentially?)", err)
	}
	select {
	case err := <-first:
		t.Fatalf("first read answered before its backend call returned: %v", err)
	default:
	}
	close(release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf0, mem.data[:4096]) || !bytes.Equal(buf1, mem.data[4096:8192]) {
		t.Fatal("wrong data")
	}
}

func serveTCP(t *testing.T, srv *Server) string { return serveTCPB(t, srv) }

func serveTCPB(t testing.TB, srv *Server) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, l) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return l.Addr().String()
}

func TestMultiConnVisibility(t *testing.T) {
	f := startFixture(t, Options{}, runSize)
	a, b := dial(t, f.tcp, "run"), dial(t, f.tcp, "run")
	if a.Flags&nbdtest.TFlagCanMultiConn == 0 {
		t.Fatal("CAN_MULTI_CONN not advertised")
	}
	ctx := testCtx(t)
	data := randomBytes(t, 8192)
	if err := a.WriteAt(ctx, data, 12288, 0); err != nil {
		t.Fatal(err)
	}
	if err := a.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(data))
	if err := b.ReadAt(ctx, got, 12288); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("second connection does not see the write: %v", err)
	}
}

// TestShutdownFinishesInFlight cancels Serve while a request is blocked in
// the backend: its reply must still arrive and Serve must return nil.
func TestShutdownFinishesInFlight(t *testing.T) {
	entered := make(chan struct{})
	release := make(chan struct{})
	mem := &memBackend{data: randomBytes(t, 1<<20)}
	mem.gate = func(off int64) {
		if off == 8192 {
			close(entered)
			<-release
		}
	}
	srv, err := NewServer([]*Export{{Name: "m", Backend: mem}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, l) }()
	c := dial(t, l.Addr().String(), "m")
	reply := make(chan error, 1)
	buf := make([]byte, 4096)
	go func() { reply <- c.ReadAt(testCtx(t), buf, 8192) }()
	<-entered
	cancel()
	select {
	case err := <-done:
		t.Fatalf("Serve returned (%v) with a request in flight", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	if err := <-reply; err != nil {
		t.Fatalf("in-flight request: %v", err)
	}
	if !bytes.Equal(buf, mem.data[8192:8192+4096]) {
		t.Fatal("in-flight read returned wrong data")
	}
	if err := <-done; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if _, err := net.Dial("tcp", l.Addr().String()); err == nil {
		t.Fatal("listener still accepting after shutdown")
	}
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	f := startFixture(t, Options{Metrics: m}, runSize)
	c := dial(t, f.tcp, "run")
	ro := dial(t, f.tcp, "image")
	ctx := testCtx(t)
	c.WriteAt(ctx, make([]byte, 8192), 0, 0)
	c.ReadAt(ctx, make([]byte, 4096), 0)
	c.ReadAt(ctx, make([]byte, 4096), 4096)
	c.Flush(ctx)
	ro.WriteAt(ctx, make([]byte, 512), 0, 0)
	tests := []struct {
		c    prometheus.Collector
		want float64
	}{
		{m.requests.WithLabelValues("run", "read"), 2},
		{m.requests.WithLabelValues("run", "write"), 1},
		{m.requests.WithLabelValues("run", "flush"), 1},
		{m.bytesRead.WithLabelValues("run"), 8192},
		{m.bytesWritten.WithLabelValues("run"), 8192},
		{m.errors.WithLabelValues("image", "write"), 1},
		{m.errors.WithLabelValues("run", "read"), 0},
		{m.conns.WithLabelValues("run"), 1},
	}
	for i, tt := range tests {
		if got := testutil.ToFloat64(tt.c); got != tt.want {
			t.Errorf("metric %d: %v, want %v", i, got, tt.want)
		}
	}
	if n := testutil.CollectAndCount(m.latency); n == 0 {
		t.Error("no latency histograms")
	}
}

// rawConn connects and completes the greeting, returning the connection.
func rawConn(t *testing.T, addr string, clientFlags uint32) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	var hello [18]byte
	if _, err := io.ReadFull(c, hello[:]); err != nil {
		t.Fatal(err)
	}
	if binary.BigEndian.Uint64(hello[:]) != magicNBD || binary.BigEndian.Uint64(hello[8:]) != magicIHaveOpt {
		t.Fatalf("bad greeting % x", hello)
	}
	if got := binary.BigEndian.Uint16(hello[16:]); got != flagFixedNewstyle|flagNoZeroes {
		t.Fatalf("handshake flags %#x", got)
	}
	binary.Write(c, binary.BigEndian, clientFlags)
	return c
}

func goData(name string, infos ...uint16) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(len(name)))
	b = append(b, name...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(infos)))
	for _, i := range infos {
		b = binary.BigEndian.AppendUint16(b, i)
	}
	return b
}

// expectClosed asserts the server hangs up (EOF or reset) without sending
// anything more than allowed.
func expectClosed(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(c)
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("connection not closed: %v", err)
	}
	if len(b) != 0 {
		t.Fatalf("unexpected %d bytes before close", len(b))
	}
}

func TestHandshake(t *testing.T) {
	f := startFixture(t, Options{HandshakeTimeout: 2 * time.Second}, runSize)
	type reply struct {
		typ  uint32
		data []byte // nil: do not compare
	}
	infoExp := func(size uint64, flags uint16) []byte {
		b := binary.BigEndian.AppendUint16(nil, infoExport)
		b = binary.BigEndian.AppendUint64(b, size)
		return binary.BigEndian.AppendUint16(b, flags)
	}
	rwFlags := uint16(tflagHasFlags | tflagCanMultiConn | tflagSendFlush | tflagSendFUA | tflagSendTrim | tflagSendWriteZeroes)
	roFlags := uint16(tflagHasFlags | tflagCanMultiConn | tflagReadOnly)
	server := func(name string) []byte {
		return append(binary.BigEndian.AppendUint32(nil, uint32(len(name))), name...)
	}
	blockSize := []byte{0, 3, 0, 0, 0, 1, 0, 0, 0x10, 0, 0x02, 0, 0, 0}
	metaCtx := append([]byte{0, 0, 0, metaBaseID}, metaBaseAllocation...)
	tests := []struct {
		name    string
		opt     uint32
		data    []byte
		replies []reply
	}{
		{"unknown option", 200, []byte("xyz"), []reply{{repErrUnsup, nil}}},
		{"starttls", optStartTLS, nil, []reply{{repErrUnsup, nil}}},
		{"set meta context too early", optSetMetaContext, metaData("image", metaBaseAllocation), []reply{{repErrInval, nil}}},
		{"structured reply with data", optStructuredReply, []byte{0}, []reply{{repErrInval, nil}}},
		{"structured reply", optStructuredReply, nil, []reply{{repAck, []byte{}}}},
		{"list meta contexts", optListMetaContext, metaData("image"), []reply{{repMetaCtx, metaCtx}, {repAck, []byte{}}}},
		{"list base: contexts", optListMetaContext, metaData("", "base:"), []reply{{repMetaCtx, metaCtx}, {repAck, []byte{}}}},
		{"list unknown context", optListMetaContext, metaData("run", "qemu:dirty-bitmap:a"), []reply{{repAck, []byte{}}}},
		{"set no context", optSetMetaContext, metaData("image"), []reply{{repAck, []byte{}}}},
		{"set meta context unknown export", optSetMetaContext, metaData("nope", metaBaseAllocation), []reply{{repErrUnknwn, nil}}},
		{"set meta context overrun", optSetMetaContext, []byte{0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 9, 'b'}, []reply{{repErrInval, nil}}},
		{"set meta context trailing", optSetMetaContext, append(metaData("image"), 0), []reply{{repErrInval, nil}}},
		{"set meta context", optSetMetaContext, metaData("image", "x:y", metaBaseAllocation), []reply{{repMetaCtx, metaCtx}, {repAck, []byte{}}}},
		{"list", optList, nil, []reply{{repServer, append(server("run"), "run volume"...)}, {repServer, server("image")}, {repAck, []byte{}}}},
		{"list with data", optList, []byte{1}, []reply{{repErrInval, nil}}},
		{"info rw", optInfo, goData("run", infoName, infoDescription, infoBlockSize), []reply{
			{repInfo, append([]byte{0, 1}, "run"...)},
			{repInfo, append([]byte{0, 2}, "run volume"...)},
			{repInfo, blockSize},
			{repInfo, infoExp(runSize, rwFlags)},
			{repAck, []byte{}},
		}},
		{"info ro, no description", optInfo, goData("image", infoDescription, 99), []reply{{repInfo, infoExp(imageSize, roFlags)}, {repAck, []byte{}}}},
		{"info default export", optInfo, goData(""), []reply{{repInfo, infoExp(runSize, rwFlags)}, {repAck, []byte{}}}},
		{"info unknown export", optInfo, goData("nope"), []reply{{repErrUnknwn, nil}}},
		{"go unknown export", optGo, goData("nope"), []reply{{repErrUnknwn, nil}}},
		{"info short", optInfo, []byte{0, 0, 0}, []reply{{repErrInval, nil}}},
		{"info name overrun", optInfo, []byte{0xff, 0xff, 0xff, 0xff, 0, 0}, []reply{{repErrInval, nil}}},
		{"info count mismatch", optInfo, append(goData("run"), 0, 3), []reply{{repErrInval, nil}}},
	}
	// All on one connection: error replies must leave it usable.
	c := rawConn(t, f.tcp, flagFixedNewstyle|flagNoZeroes)
	for _, tt := range tests {
		if err := nbdtest.SendOption(c, tt.opt, tt.data); err != nil {
			t.Fatal(err)
		}
		for i, want := range tt.replies {
			opt, typ, data, err := nbdtest.ReadOptionReply(c)
			if err != nil {
				t.Fatalf("%s: reply %d: %v", tt.name, i, err)
			}
			if opt != tt.opt || typ != want.typ || want.data != nil && !bytes.Equal(data, want.data) {
				t.Errorf("%s: reply %d: opt %d type %#x data %q; want type %#x data %q", tt.name, i, opt, typ, data, want.typ, want.data)
			}
		}
	}
	// Finally GO enters transmission; a read is answered with one
	// structured chunk, errors with error chunks, block status works.
	nbdtest.SendOption(c, optGo, goData("image"))
	for {
		_, typ, _, err := nbdtest.ReadOptionReply(c)
		if err != nil {
			t.Fatal(err)
		}
		if typ == repAck {
			break
		}
	}
	chunk := func(flags, typ uint16, cookie uint64, payload []byte) []byte {
		b := make([]byte, chunkSize, chunkSize+len(payload))
		putChunk(b, flags, typ, cookie, uint32(len(payload)))
		return append(b, payload...)
	}
	errChunk := func(cookie uint64, errno uint32) []byte {
		b := make([]byte, errChunkSize)
		putErrorChunk(b, errno, cookie)
		return b
	}
	for _, tt := range []struct {
		name  string
		req   []byte
		reply []byte
	}{
		{"read", fuzzReq(0, cmdRead, 0, 16, nil), chunk(chunkFlagDone, chunkOffsetData, 1, append(make([]byte, 8), f.imageBytes[:16]...))},
		{"read at 4", fuzzReq(0, cmdRead, 4, 4, nil), chunk(chunkFlagDone, chunkOffsetData, 1, append([]byte{0, 0, 0, 0, 0, 0, 0, 4}, f.imageBytes[4:8]...))},
		{"empty read", fuzzReq(0, cmdRead, 0, 0, nil), chunk(chunkFlagDone, chunkNone, 1, nil)},
		{"read past end", fuzzReq(0, cmdRead, imageSize, 1, nil), errChunk(1, errInval)},
		{"block status", fuzzReq(0, cmdBlockStatus, 0, imageSize, nil), chunk(chunkFlagDone, chunkBlockStatus, 1, []byte{0, 0, 0, 1, 0, 0x10, 0, 0, 0, 0, 0, 0})},
		{"block status req one", fuzzReq(cmdFlagReqOne, cmdBlockStatus, 1, 2, nil), chunk(chunkFlagDone, chunkBlockStatus, 1, []byte{0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 0})},
		{"block status empty", fuzzReq(0, cmdBlockStatus, 0, 0, nil), errChunk(1, errInval)},
		{"block status past end", fuzzReq(0, cmdBlockStatus, imageSize-1, 2, nil), errChunk(1, errInval)},
		{"block status bad flag", fuzzReq(cmdFlagFUA, cmdBlockStatus, 0, 1, nil), errChunk(1, errInval)},
		{"write is a simple reply", fuzzReq(0, cmdWrite, 0, 1, []byte{1}), []byte{0x67, 0x44, 0x66, 0x98, 0, 0, 0, errPerm, 0, 0, 0, 0, 0, 0, 0, 1}},
	} {
		c.Write(tt.req)
		rep := make([]byte, len(tt.reply))
		if _, err := io.ReadFull(c, rep); err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if !bytes.Equal(rep, tt.reply) {
			t.Errorf("%s: reply\n% x, want\n% x", tt.name, rep, tt.reply)
		}
	}
}

func TestExportName(t *testing.T) {
	f := startFixture(t, Options{}, runSize)
	for _, tt := range []struct {
		name     string
		flags    uint32
		export   string
		wantSize uint64
		zeroes   bool
	}{
		{"named, no zeroes", flagFixedNewstyle | flagNoZeroes, "image", imageSize, false},
		{"default, zeroes", flagFixedNewstyle, "", runSize, true},
		{"non-fixed client", 0, "run", runSize, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := rawConn(t, f.tcp, tt.flags)
			nbdtest.SendOption(c, optExportName, []byte(tt.export))
			n := 10
			if tt.zeroes {
				n += zeroPadding
			}
			b := make([]byte, n)
			if _, err := io.ReadFull(c, b); err != nil {
				t.Fatal(err)
			}
			if got := binary.BigEndian.Uint64(b); got != tt.wantSize {
				t.Fatalf("size %d, want %d", got, tt.wantSize)
			}
			if tt.zeroes && !bytes.Equal(b[10:], make([]byte, zeroPadding)) {
				t.Fatal("padding not zero")
			}
			// DISC: the server closes without further bytes.
			req := make([]byte, 28)
			binary.BigEndian.PutUint32(req, magicRequest)
			binary.BigEndian.PutUint16(req[6:], cmdDisc)
			c.Write(req)
			expectClosed(t, c)
		})
	}
}

// TestHostile checks that protocol violations close the connection (never
// a panic, never a write to the file) and that the server keeps serving.
func TestHostile(t *testing.T) {
	f := startFixture(t, Options{HandshakeTimeout: 300 * time.Millisecond, MaxBlockSize: 1 << 20}, runSize)
	goTransmission := func(t *testing.T) net.Conn {
		c := rawConn(t, f.tcp, flagFixedNewstyle|flagNoZeroes)
		nbdtest.SendOption(c, optExportName, []byte("run"))
		io.ReadFull(c, make([]byte, 10))
		return c
	}
	req := func(typ uint16, off uint64, n uint32) []byte {
		b := make([]byte, 28)
		binary.BigEndian.PutUint32(b, magicRequest)
		binary.BigEndian.PutUint16(b[6:], typ)
		binary.BigEndian.PutUint64(b[16:], off)
		binary.BigEndian.PutUint32(b[24:], n)
		return b
	}
	tests := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"unknown client flags", func(t *testing.T) {
			expectClosed(t, rawConn(t, f.tcp, 1<<7))
		}},
		{"bad option magic", func(t *testing.T) {
			c := rawConn(t, f.tcp, flagFixedNewstyle)
			c.Write(bytes.Repeat([]byte{0xee}, 16))
			expectClosed(t, c)
		}},
		{"huge option", func(t *testing.T) {
			c := rawConn(t, f.tcp, flagFixedNewstyle)
			b := binary.BigEndian.AppendUint64(nil, magicIHaveOpt)
			b = binary.BigEndian.AppendUint32(b, 200)
			b = binary.BigEndian.AppendUint32(b, 1<<31)
			c.Write(b)
			expectClosed(t, c)
		}},
		{"unknown export name", func(t *testing.T) {
			c := rawConn(t, f.tcp, flagFixedNewstyle)
			nbdtest.SendOption(c, optExportName, []byte("nope"))
			expectClosed(t, c)
		}},
		{"handshake timeout", func(t *testing.T) {
			c := rawConn(t, f.tcp, flagFixedNewstyle)
			expectClosed(t, c) // sends nothing more; the server gives up
		}},
		{"silent after connect", func(t *testing.T) {
			c, err := net.Dial("tcp", f.tcp)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			b, _ := io.ReadAll(c)
			if len(b) != 18 {
				t.Fatalf("got %d bytes before close, want the 18-byte greeting", len(b))
			}
		}},
		{"garbage request magic", func(t *testing.T) {
			c := goTransmission(t)
			c.Write(bytes.Repeat([]byte{0x55}, 28))
			expectClosed(t, c)
		}},
		{"short request", func(t *testing.T) {
			c := goTransmission(t)
			c.Write(req(cmdRead, 0, 4096)[:20])
			c.(*net.TCPConn).CloseWrite()
			expectClosed(t, c)
		}},
		{"short write payload", func(t *testing.T) {
			c := goTransmission(t)
			c.Write(append(req(cmdWrite, 0, 4096), bytes.Repeat([]byte{1}, 100)...))
			c.(*net.TCPConn).CloseWrite()
			expectClosed(t, c)
		}},
		{"short large write payload", func(t *testing.T) {
			c := goTransmission(t)
			c.Write(append(req(cmdWrite, 0, 512<<10), bytes.Repeat([]byte{1}, 300<<10)...))
			c.(*net.TCPConn).CloseWrite()
			expectClosed(t, c)
		}},
		{"oversize write", func(t *testing.T) {
			c := goTransmission(t)
			c.Write(req(cmdWrite, 0, 1<<30))
			expectClosed(t, c)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, tt.run)
	}
	// Nothing reached the file, and the server still works.
	b, _ := os.ReadFile(f.runPath)
	if len(b) != runSize || !bytes.Equal(b, make([]byte, runSize)) {
		t.Fatal("run image modified by hostile clients")
	}
	c := dial(t, f.tcp, "run")
	if err := c.ReadAt(testCtx(t), make([]byte, 4096), 0); err != nil {
		t.Fatal(err)
	}
}

func TestNewServerErrors(t *testing.T) {
	mem := &memBackend{data: make([]byte, 4096)}
	tests := []struct {
		name    string
		exports []*Export
		opts    Options
		want    string
	}{
		{"no exports", nil, Options{}, "no exports"},
		{"nil backend", []*Export{{Name: "a"}}, Options{}, "no backend"},
		{"duplicate", []*Export{{Name: "a", Backend: mem}, {Name: "a", Backend: mem}}, Options{}, "twice"},
		{"long name", []*Export{{Name: strings.Repeat("x", 5000), Backend: mem}}, Options{}, "longer than"},
		{"missing default", []*Export{{Name: "a", Backend: mem}}, Options{DefaultExport: "b"}, "default export"},
		{"tiny block size", []*Export{{Name: "a", Backend: mem}}, Options{MaxBlockSize: 512}, "below 4096"},
		{"peer CID any", []*Export{{Name: "a", Backend: mem, PeerCIDs: []uint32{3, cidAny}}}, Options{}, "VMADDR_CID_ANY"},
	}
	for _, tt := range tests {
		_, err := NewServer(tt.exports, tt.opts)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error %v, want one containing %q", tt.name, err, tt.want)
		}
	}
}

// TestPipelinedThenDisc sends a burst of reads and NBD_CMD_DISC in one
// write: every read must be answered (in any order) before the close.
func TestPipelinedThenDisc(t *testing.T) {
	f := startFixture(t, Options{}, runSize)
	c := rawConn(t, f.tcp, flagFixedNewstyle|flagNoZeroes)
	nbdtest.SendOption(c, optExportName, []byte("image"))
	io.ReadFull(c, make([]byte, 10))
	const n = 200
	var burst []byte
	for i := range n {
		r := make([]byte, 28)
		binary.BigEndian.PutUint32(r, magicRequest)
		binary.BigEndian.PutUint64(r[8:], uint64(i))
		binary.BigEndian.PutUint64(r[16:], uint64(i)*4096)
		binary.BigEndian.PutUint32(r[24:], 4096)
		burst = append(burst, r...)
	}
	disc := make([]byte, 28)
	binary.BigEndian.PutUint32(disc, magicRequest)
	binary.BigEndian.PutUint16(disc[6:], cmdDisc)
	c.Write(append(burst, disc...))
	seen := make(map[uint64]bool)
	for range n {
		rep := make([]byte, 16+4096)
		if _, err := io.ReadFull(c, rep); err != nil {
			t.Fatalf("after %d replies: %v", len(seen), err)
		}
		cookie := binary.BigEndian.Uint64(rep[8:])
		if binary.BigEndian.Uint32(rep) != magicSimpleReply || binary.BigEndian.Uint32(rep[4:]) != 0 || cookie >= n || seen[cookie] {
			t.Fatalf("bad reply % x", rep[:16])
		}
		seen[cookie] = true
		if !bytes.Equal(rep[16:], f.imageBytes[cookie*4096:(cookie+1)*4096]) {
			t.Fatalf("wrong data for cookie %d", cookie)
		}
	}
	expectClosed(t, c)
}

// plainConn hides a connection's type, as a vsock connection looks to the
// server: no writev, no sendfile.
type plainConn struct{ net.Conn }

type plainListener struct{ net.Listener }

func (l plainListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return plainConn{c}, nil
}

// TestPlainConn runs a pipelined mix of reads over a connection without
// writev or sendfile (the vsock case): replies are joined by copying.
func TestPlainConn(t *testing.T) {
	f := startFixture(t, Options{}, runSize)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.srv.Serve(ctx, plainListener{l}) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	c := dial(t, l.Addr().String(), "image")
	errs := make(chan error, 64)
	for i := range 64 {
		go func() {
			n, off := 4096, (i*7919)%(imageSize-(600<<10))
			if i%8 == 0 {
				n = 600 << 10
			}
			b := make([]byte, n)
			err := c.ReadAt(testCtx(t), b, uint64(off))
			if err == nil && !bytes.Equal(b, f.imageBytes[off:off+n]) {
				err = errors.New("wrong data")
			}
			errs <- err
		}()
	}
	for range 64 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

// failingListener accepts once, then fails when told to.
type failingListener struct {
	net.Listener
	fail chan struct{}
	n    int
}

func (l *failingListener) Accept() (net.Conn, error) {
	if l.n > 0 {
		<-l.fail
		return nil, errors.New("listener broke")
	}
	l.n++
	return l.Listener.Accept()
}

// TestListenerFailure: Serve reports a broken listener and closes the
// connections it accepted instead of waiting for them forever.
func TestListenerFailure(t *testing.T) {
	srv, err := NewServer([]*Export{{Name: "m", Backend: &memBackend{data: make([]byte, 1<<20)}}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &failingListener{Listener: tl, fail: make(chan struct{})}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(context.Background(), l) }()
	c := dial(t, tl.Addr().String(), "m")
	if err := c.ReadAt(testCtx(t), make([]byte, 512), 0); err != nil {
		t.Fatal(err)
	}
	close(l.fail)
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "listener broke") {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Serve did not return after its listener failed")
	}
	if err := c.ReadAt(testCtx(t), make([]byte, 512), 0); err == nil {
		t.Fatal("connection still served after Serve returned")
	}
	tl.Close()
}

// TestPlainConnFile runs the vsock test's workload over a connection that
// looks like vsock to the server (no writev, no sendfile), here on TCP.
func TestPlainConnFile(t *testing.T) {
	f, err := OpenFile(t.TempDir()+"/run.img", FileOptions{Size: 4 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	srv, err := NewServer([]*Export{{Name: "run", Backend: f}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, plainListener{l}) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	exerciseFileExport(t, dial(t, l.Addr().String(), "run"))
}

// TestTrickledLargeWrite sends a large write's payload in small, delayed
// pieces: the raised receive low-water mark must follow what is still
// owed, or the server would wait for bytes that never come.
func TestTrickledLargeWrite(t *testing.T) {
	f := startFixture(t, Options{}, runSize)
	c := rawConn(t, f.tcp, flagFixedNewstyle|flagNoZeroes)
	nbdtest.SendOption(c, optExportName, []byte("run"))
	io.ReadFull(c, make([]byte, 10))
	data := randomBytes(t, 600<<10+37)
	hdr := make([]byte, 28)
	binary.BigEndian.PutUint32(hdr, magicRequest)
	binary.BigEndian.PutUint16(hdr[6:], cmdWrite)
	binary.BigEndian.PutUint64(hdr[8:], 9)
	binary.BigEndian.PutUint64(hdr[16:], 4096)
	binary.BigEndian.PutUint32(hdr[24:], uint32(len(data)))
	c.Write(append(hdr, data[:1000]...))
	for off := 1000; off < len(data); off += 47 << 10 {
		time.Sleep(2 * time.Millisecond)
		c.Write(data[off:min(off+47<<10, len(data))])
	}
	rep := make([]byte, 16)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(c, rep); err != nil {
		t.Fatalf("no reply to a trickled write: %v", err)
	}
	if binary.BigEndian.Uint32(rep[4:]) != 0 || binary.BigEndian.Uint64(rep[8:]) != 9 {
		t.Fatalf("reply % x", rep)
	}
	got, _ := os.ReadFile(f.runPath)
	if g := got[4096 : 4096+len(data)]; !bytes.Equal(g, data) {
		i := 0
		for i < len(g) && g[i] == data[i] {
			i++
		}
		t.Fatalf("trickled write not in the file: first difference at byte %d of %d", i, len(data))
	}
}

// TestMixedWrites sends small writes, which the reader executes itself
// when the file is free (inlineWriter), interleaved with 1 MiB ones,
// which go to workers and hold the file while they write, so that small
// writes also find it busy and fall back to workers; everything in
// flight at once on one connection, on TCP and on a unix socket. The
// file must end up holding every write.
func TestMixedWrites(t *testing.T) {
	f := startFixture(t, Options{}, runSize)
	for _, tt := range []struct{ name, network, addr string }{
		{"tcp", "tcp", f.tcp},
		{"unix", "unix", f.unix},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx := testCtx(t)
			c, err := nbdtest.Dial(ctx, tt.network, tt.addr, "run")
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			want := randomBytes(t, runSize)
			// Disjoint pieces of sizes 512 B to 1 MiB covering the export.
			type piece struct{ off, n int }
			var pieces []piece
			sizes := []int{4096, 1 << 20, 512, 16 << 10, 8192, 1 << 20, 20 << 10}
			for off, i := 0, 0; off < runSize; i++ {
				n := min(sizes[i%len(sizes)], runSize-off)
				pieces = append(pieces, piece{off, n})
				off += n
			}
			var wg sync.WaitGroup
			errs := make(chan error, len(pieces))
			for _, p := range pieces {
				wg.Add(1)
				go func() {
					defer wg.Done()
					errs <- c.WriteAt(ctx, want[p.off:p.off+p.n], uint64(p.off), 0)
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Fatal(err)
				}
			}
			got := make([]byte, runSize)
			for off := 0; off < runSize; off += 1 << 20 {
				if err := c.ReadAt(ctx, got[off:min(off+1<<20, runSize)], uint64(off)); err != nil {
					t.Fatal(err)
				}
			}
			if !bytes.Equal(got, want) {
				t.Fatal("the export does not hold what was written")
			}
			disk, err := os.ReadFile(f.runPath)
			if err != nil || !bytes.Equal(disk, want) {
				t.Fatalf("the file does not hold what was written (%v)", err)
			}
		})
	}
}
