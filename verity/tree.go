package verity

import (
	"context"
	"errors"
	"fmt"
	"hash"
	"io"
	"runtime"
	"sync"
	"sync/atomic"
)

// batchBytes is the amount of data one worker hashes per batch. Batches are
// whole level-0 hash blocks, so a batch maps to a contiguous run of the tree.
const batchBytes = 2 << 20

// hasher computes H(salt || block) for one goroutine.
type hasher struct {
	h    hash.Hash
	salt []byte
	sum  []byte
}

func (g *geometry) newHasher(salt []byte) *hasher {
	return &hasher{h: g.newHash(), salt: salt, sum: make([]byte, 0, g.digestSize)}
}

// digest returns H(salt || block); the result is valid until the next call.
func (hs *hasher) digest(block []byte) []byte {
	hs.h.Reset()
	hs.h.Write(hs.salt)
	hs.h.Write(block)
	hs.sum = hs.h.Sum(hs.sum[:0])
	return hs.sum
}

// batchBlocks is the number of level-0 hash blocks in one batch.
func (g *geometry) batchBlocks() uint64 {
	k := batchBytes / (g.perBlock * g.dbs)
	if k < 1 {
		k = 1
	}
	return k
}

// batchRange returns the level-0 hash blocks [hb0, hb0+nhb) and the data
// blocks [db0, db0+ndb) of batch b.
func (g *geometry) batchRange(b uint64) (hb0, nhb, db0, ndb uint64) {
	k := g.batchBlocks()
	hb0 = b * k
	nhb = min(k, g.levelSize[0]-hb0)
	db0 = hb0 * g.perBlock
	ndb = min(nhb*g.perBlock, g.dataBlocks-db0)
	return
}

func (g *geometry) batches() uint64 {
	k := g.batchBlocks()
	return (g.levelSize[0] + k - 1) / k
}

// runBatches runs work(batch) for batches 0..n-1 on up to workers
// goroutines, each with its own state from newWorker. It returns the error
// of the lowest-numbered failing batch, so that "the first bad block" is the
// first in device order whatever the scheduling; batches after a failed one
// are skipped.
func runBatches(ctx context.Context, workers int, n uint64, newWorker func() func(uint64) error) error {
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	workers = int(min(uint64(workers), n))
	var (
		next     atomic.Uint64
		mu       sync.Mutex
		firstBad = n // lowest failed batch
		firstErr error
		wg       sync.WaitGroup
	)
	failed := func() uint64 { mu.Lock(); defer mu.Unlock(); return firstBad }
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			work := newWorker()
			for {
				b := next.Add(1) - 1
				if b >= n || b > failed() {
					return
				}
				err := ctx.Err()
				if err == nil {
					err = work(b)
				}
				if err != nil {
					mu.Lock()
					if b < firstBad {
						firstBad, firstErr = b, err
					}
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	return firstErr
}

// readFull reads len(b) bytes at off, mapping a short read to ErrTruncated
// with the area named.
func readFull(r io.ReaderAt, b []byte, off uint64, what string) error {
	n, err := r.ReadAt(b, int64(off))
	if n == len(b) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: %s: want %d bytes at offset %d, got %d", ErrTruncated, what, len(b), off, n)
	}
	return fmt.Errorf("verity: reading %s at offset %d: %w", what, off, err)
}

// slot returns digest idx%perBlock stored in the hash block.
func (g *geometry) slot(block []byte, idx uint64) []byte {
	o := int(idx%g.perBlock) * g.slotSize
	return block[o : o+g.digestSize]
}
