package nbd

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"sync"
	"testing"

	"github.com/enclave-storage/enclave-storage/nbd/nbdtest"
)

// chunkedConn sends every Write in pieces of at most chunk bytes, so the
// server's socket receives many small segments (on a unix socket, one
// buffer each) and a payload arrives in many reads.
type chunkedConn struct {
	net.Conn
	chunk int
}

func (c chunkedConn) Write(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		m, err := c.Conn.Write(p[n:min(n+c.chunk, len(p))])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// TestLargeWrites sends concurrent large writes (the sizes TCP reads with
// a raised SO_RCVLOWAT, one it does not, and a FUA write, which goes to a
// worker) over TCP and unix sockets, whole and in small pieces, and
// checks the file holds exactly what was written.
func TestLargeWrites(t *testing.T) {
	for _, network := range []string{"tcp", "unix"} {
		for _, chunk := range []int{0, 1024} {
			t.Run(fmt.Sprintf("%s/chunk=%d", network, chunk), func(t *testing.T) {
				f := startFixture(t, Options{}, runSize)
				addr := f.addr(network)
				nc, err := net.Dial(network, addr)
				if err != nil {
					t.Fatal(err)
				}
				var conn net.Conn = nc
				if chunk > 0 {
					conn = chunkedConn{nc, chunk}
				}
				ctx := testCtx(t)
				c, err := nbdtest.Handshake(ctx, conn, "run")
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				want := randomBytes(t, runSize)
				sizes := []int{1 << 20, 1 << 20, 128 << 10, 1<<20 + 4096, 512<<10 + 7, 1 << 20, 100 << 10}
				var wg sync.WaitGroup
				off := 0
				for i, n := range sizes {
					flags := uint16(0)
					if i == 2 {
						flags = nbdtest.FlagFUA
					}
					o := off
					wg.Go(func() {
						if err := c.WriteAt(ctx, want[o:o+n], uint64(o), flags); err != nil {
							t.Errorf("write %d+%d: %v", o, n, err)
						}
					})
					off += n
				}
				wg.Wait()
				got, err := os.ReadFile(f.runPath)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got[:off], want[:off]) {
					i := 0
					for got[i] == want[i] {
						i++
					}
					t.Fatalf("file differs from what was written at byte %d", i)
				}
			})
		}
	}
}

// TestTruncatedLargeWrite closes the connection in the middle of a large
// write's payload: the server must drop the connection without writing
// anything and keep serving others.
func TestTruncatedLargeWrite(t *testing.T) {
	for _, network := range []string{"tcp", "unix"} {
		t.Run(network, func(t *testing.T) {
			f := startFixture(t, Options{}, runSize)
			addr := f.addr(network)
			nc, err := net.Dial(network, addr)
			if err != nil {
				t.Fatal(err)
			}
			ctx := testCtx(t)
			_, err = nbdtest.Handshake(ctx, nc, "run")
			if err != nil {
				t.Fatal(err)
			}
			hdr := make([]byte, 28)
			binary.BigEndian.PutUint32(hdr, magicRequest)
			binary.BigEndian.PutUint16(hdr[6:], cmdWrite)
			binary.BigEndian.PutUint64(hdr[8:], 1)
			binary.BigEndian.PutUint32(hdr[24:], 1<<20)
			nc.Write(append(hdr, randomBytes(t, 300<<10)...))
			nc.Close() // abruptly: no NBD_CMD_DISC
			c2, err := nbdtest.Dial(ctx, network, addr, "run")
			if err != nil {
				t.Fatal(err)
			}
			defer c2.Close()
			got := make([]byte, 1<<20)
			if err := c2.ReadAt(ctx, got, 0); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, make([]byte, 1<<20)) {
				t.Fatal("part of a truncated write reached the file")
			}
		})
	}
}
