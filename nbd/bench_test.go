package nbd

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/enclave-storage/enclave-storage/nbd/nbdtest"
)

// BenchmarkRandRead4K measures 4 KiB random reads from a file export over
// TCP loopback with 4 connections of 32 requests in flight each (the
// client is nbdtest, in the same process).
func BenchmarkRandRead4K(b *testing.B) {
	benchRead(b, 4096, 4, 32)
}

// BenchmarkSeqRead1M measures 1 MiB reads, one connection, 8 in flight.
func BenchmarkSeqRead1M(b *testing.B) {
	benchRead(b, 1<<20, 1, 8)
}

func benchRead(b *testing.B, size, conns, depth int) {
	dir := b.TempDir()
	const fileSize = 64 << 20
	f, err := OpenFile(dir+"/bench.img", FileOptions{Size: fileSize})
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	f.WriteAt(randomBytes(b, fileSize), 0)
	srv, err := NewServer([]*Export{{Name: "b", Backend: f}}, Options{})
	if err != nil {
		b.Fatal(err)
	}
	addr := serveTCPB(b, srv)
	ctx := context.Background()
	var clients []*nbdtest.Client
	for range conns {
		c, err := nbdtest.Dial(ctx, "tcp", addr, "b")
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		clients = append(clients, c)
	}
	b.SetBytes(int64(size))
	b.ResetTimer()
	var wg sync.WaitGroup
	per := b.N/(conns*depth) + 1
	for _, c := range clients {
		for range depth {
			wg.Add(1)
			go func() {
				defer wg.Done()
				buf := make([]byte, size)
				for range per {
					off := rand.Uint64N(fileSize/uint64(size)) * uint64(size)
					if err := c.ReadAt(ctx, buf, off); err != nil {
						b.Error(err)
						return
					}
				}
			}()
		}
	}
	wg.Wait()
}

// slowBackend adds a fixed latency to every read, like a disk or a
// network volume under the parent's file.
type slowBackend struct {
	*memBackend
	delay time.Duration
}

func (s slowBackend) ReadAt(p []byte, off int64) (int, error) {
	time.Sleep(s.delay)
	return s.memBackend.ReadAt(p, off)
}

// BenchmarkSlowBackend shows what executing a connection's requests one
// at a time (Workers=1, as go-nbd does) costs when storage has latency:
// 4 KiB reads, 32 in flight on one connection, 500µs per read.
func BenchmarkSlowBackend(b *testing.B) {
	for _, workers := range []int{1, 16} {
		b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) {
			mem := &memBackend{data: make([]byte, 16<<20)}
			srv, err := NewServer([]*Export{{Name: "b", Backend: slowBackend{mem, 500 * time.Microsecond}}}, Options{Workers: workers})
			if err != nil {
				b.Fatal(err)
			}
			addr := serveTCPB(b, srv)
			ctx := context.Background()
			c, err := nbdtest.Dial(ctx, "tcp", addr, "b")
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			b.ResetTimer()
			var wg sync.WaitGroup
			const depth = 32
			for range depth {
				wg.Add(1)
				go func() {
					defer wg.Done()
					buf := make([]byte, 4096)
					for range b.N/depth + 1 {
						if err := c.ReadAt(ctx, buf, rand.Uint64N(4096)*4096); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
		})
	}
}
