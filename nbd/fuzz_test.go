package nbd

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

// fuzzConn is a net.Conn that reads a fixed input and discards output.
type fuzzConn struct {
	r io.Reader
	n int // bytes written, to bound a runaway server
}

func (c *fuzzConn) Read(p []byte) (int, error)         { return c.r.Read(p) }
func (c *fuzzConn) Write(p []byte) (int, error)        { c.n += len(p); return len(p), nil }
func (c *fuzzConn) Close() error                       { return nil }
func (c *fuzzConn) LocalAddr() net.Addr                { return &net.UnixAddr{Name: "fuzz", Net: "unix"} }
func (c *fuzzConn) RemoteAddr() net.Addr               { return &net.UnixAddr{Name: "fuzz", Net: "unix"} }
func (c *fuzzConn) SetDeadline(t time.Time) error      { return nil }
func (c *fuzzConn) SetReadDeadline(t time.Time) error  { return nil }
func (c *fuzzConn) SetWriteDeadline(t time.Time) error { return nil }

// viewMem is a memBackend that takes the reader's fast path for cached
// reads (viewer), counting the views it lends that are not yet unpinned.
type viewMem struct {
	*memBackend
	pinned *atomic.Int64
}

func (v viewMem) view(off, n int64) []byte {
	b := make([]byte, n) // a copy: the test's writes would race a real view
	if m, _ := v.ReadAt(b, off); m != len(b) {
		return nil
	}
	v.pinned.Add(1)
	return b
}

func (v viewMem) unpin() { v.pinned.Add(-1) }

// fuzzSeed builds a client byte stream: greeting reply, options, requests.
func fuzzSeed(opts [][]byte, reqs ...[]byte) []byte {
	b := binary.BigEndian.AppendUint32(nil, flagFixedNewstyle|flagNoZeroes)
	for _, o := range opts {
		b = append(b, o...)
	}
	for _, r := range reqs {
		b = append(b, r...)
	}
	return b
}

func fuzzOpt(opt uint32, data []byte) []byte {
	b := binary.BigEndian.AppendUint64(nil, magicIHaveOpt)
	b = binary.BigEndian.AppendUint32(b, opt)
	b = binary.BigEndian.AppendUint32(b, uint32(len(data)))
	return append(b, data...)
}

// metaData builds the data of NBD_OPT_{LIST,SET}_META_CONTEXT.
func metaData(export string, queries ...string) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(len(export)))
	b = append(b, export...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(queries)))
	for _, q := range queries {
		b = binary.BigEndian.AppendUint32(b, uint32(len(q)))
		b = append(b, q...)
	}
	return b
}

func fuzzReq(flags, typ uint16, off uint64, n uint32, payload []byte) []byte {
	b := binary.BigEndian.AppendUint32(nil, magicRequest)
	b = binary.BigEndian.AppendUint16(b, flags)
	b = binary.BigEndian.AppendUint16(b, typ)
	b = binary.BigEndian.AppendUint64(b, 1)
	b = binary.BigEndian.AppendUint64(b, off)
	b = binary.BigEndian.AppendUint32(b, n)
	return append(b, payload...)
}

// FuzzServerConn feeds arbitrary client bytes to a server connection with
// a read-write and a read-only export, and a read-write one bound to a
// vsock CID the fuzzed (unix) peer does not have. The server must not
// panic, hang or write outside the export, and the read-only and bound
// exports must stay untouched.
func FuzzServerConn(f *testing.F) {
	goRun := fuzzOpt(optGo, goData("rw", infoBlockSize, infoName))
	f.Add(fuzzSeed([][]byte{fuzzOpt(optList, nil), fuzzOpt(200, []byte("x")), goRun},
		fuzzReq(0, cmdWrite, 100, 4, []byte("abcd")),
		fuzzReq(cmdFlagFUA, cmdWrite, 65530, 10, make([]byte, 10)),
		fuzzReq(0, cmdRead, 0, 4096, nil),
		fuzzReq(0, cmdTrim, 0, 4096, nil),
		fuzzReq(cmdFlagNoHole, cmdWriteZeroes, 512, 512, nil),
		fuzzReq(0, cmdFlush, 0, 0, nil),
		fuzzReq(0, cmdDisc, 0, 0, nil)))
	f.Add(fuzzSeed([][]byte{fuzzOpt(optExportName, []byte("ro"))},
		fuzzReq(0, cmdWrite, 0, 4, []byte("abcd")),
		fuzzReq(0, cmdRead, 1<<40, 4096, nil)))
	f.Add(fuzzSeed([][]byte{fuzzOpt(optInfo, goData("ro", infoDescription)), fuzzOpt(optAbort, nil)}))
	f.Add([]byte{0, 0, 0, 1, 0x49, 0x48})
	f.Add(fuzzSeed([][]byte{fuzzOpt(optGo, goData("bound")), fuzzOpt(optExportName, []byte("bound"))},
		fuzzReq(0, cmdWrite, 0, 4, []byte("abcd"))))

	// Structured replies, meta contexts and block status.
	sr := fuzzOpt(optStructuredReply, nil)
	f.Add(fuzzSeed([][]byte{sr, fuzzOpt(optListMetaContext, metaData("rw")),
		fuzzOpt(optSetMetaContext, metaData("rw", "base:allocation", "qemu:dirty-bitmap:x")), goRun},
		fuzzReq(0, cmdRead, 0, 4096, nil),
		fuzzReq(0, cmdRead, 0, 0, nil),
		fuzzReq(0, cmdRead, 1<<40, 4096, nil),
		fuzzReq(0, cmdBlockStatus, 0, 1<<20, nil),
		fuzzReq(cmdFlagReqOne, cmdBlockStatus, 4096, 8192, nil),
		fuzzReq(0, cmdBlockStatus, 0, 0, nil),
		fuzzReq(0, cmdBlockStatus, 65536, 1, nil),
		fuzzReq(0, cmdDisc, 0, 0, nil)))
	f.Add(fuzzSeed([][]byte{fuzzOpt(optSetMetaContext, metaData("rw", "base:allocation")),
		sr, fuzzOpt(optStructuredReply, []byte{1}), fuzzOpt(optListMetaContext, metaData("bound", "base:")),
		fuzzOpt(optSetMetaContext, metaData("ro", "base:allocation")), fuzzOpt(optExportName, []byte("rw"))},
		fuzzReq(0, cmdBlockStatus, 0, 4096, nil)))
	f.Add(fuzzSeed([][]byte{sr, fuzzOpt(optSetMetaContext, []byte{0, 0, 0, 2, 'r', 'w', 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 1}),
		fuzzOpt(optListMetaContext, []byte{0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xf0})}))

	f.Fuzz(func(t *testing.T, in []byte) {
		const size = 64 << 10
		rw := &memBackend{data: make([]byte, size)}
		roData := bytes.Repeat([]byte{7}, size)
		ro := &memBackend{data: bytes.Clone(roData)}
		bound := &memBackend{data: bytes.Clone(roData)}
		var pinned atomic.Int64
		srv, err := NewServer([]*Export{
			{Name: "rw", Backend: viewMem{rw, &pinned}}, // reads answered inline

			{Name: "ro", Backend: ro, ReadOnly: true}, // reads go to workers
			{Name: "bound", Backend: bound, PeerCIDs: []uint32{16}},
		}, Options{DefaultExport: "rw", MaxBlockSize: 1 << 20, Workers: 4})
		if err != nil {
			t.Fatal(err)
		}
		c := &fuzzConn{r: bytes.NewReader(in)}
		done := make(chan struct{})
		go func() {
			srv.ServeConn(context.Background(), c)
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("ServeConn did not return at end of input")
		}
		if n := pinned.Load(); n != 0 {
			t.Fatalf("%d views still pinned after the connection ended", n)
		}
		if len(rw.data) != size || !bytes.Equal(ro.data, roData) || !bytes.Equal(bound.data, roData) {
			t.Fatal("export resized, or read-only or bound export written")
		}
		// Output is bounded by what the input asked for.
		if c.n > 64<<10+len(in)*(1<<20) {
			t.Fatalf("%d bytes written for %d bytes of input", c.n, len(in))
		}
	})
}
