package nbd

import (
	"context"
	"math/rand/v2"
	"sync"
	"testing"

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
