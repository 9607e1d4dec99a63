package verity

import (
	"context"
	"fmt"
	"io"
	"sync"
)

// Builder builds a hash tree from data blocks handed to it as they are
// produced, instead of reading the data back: imgbuild hashes its
// filesystem image while writing it, so the image is read once, not twice.
// Blocks may come in any order, from any number of goroutines, each
// exactly once. A level-0 hash block is written to the hash device as soon
// as all its data blocks are in; memory holds the incomplete ones and the
// digests of the complete ones (1/128 of the data's digests with SHA-256
// and 4096-byte blocks), never the data.
//
// The tree is the one Format writes for the same data and options.
type Builder struct {
	p       *Params
	g       *geometry
	hashDev io.WriterAt
	hashers sync.Pool // *hasher

	mu      sync.Mutex
	seen    []uint64              // one bit per data block
	pending map[uint64]*hashBlock // level-0 hash blocks being filled
	upper   []byte                // digests of the level-0 hash blocks
	full    uint64                // level-0 hash blocks written
	single  []byte                // the digest of the only data block, without a tree
	err     error                 // first failure; sticky
}

type hashBlock struct {
	b    []byte
	left uint64 // data blocks still to come
}

// NewBuilder returns a Builder for a tree over dataSize bytes of data
// (opts.DataBlocks of them if set), to be written to hashDev as Format
// would. opts.Workers is ignored: the callers' goroutines do the hashing.
func NewBuilder(dataSize int64, hashDev io.WriterAt, opts Options) (*Builder, error) {
	p, g, err := newTree(dataSize, opts)
	if err != nil {
		return nil, err
	}
	b := &Builder{
		p:       p,
		g:       g,
		hashDev: hashDev,
		seen:    make([]uint64, (p.DataBlocks+63)/64),
		pending: make(map[uint64]*hashBlock),
	}
	if g.levels > 0 {
		b.upper = make([]byte, g.levelSize[0]*uint64(g.digestSize))
	}
	b.hashers.New = func() any { return g.newHasher(p.Salt) }
	return b, nil
}

// WriteAt hashes the data blocks in p, which starts at byte off of the
// data: both multiples of the data block size, inside the data area, each
// block given once. Safe for concurrent use.
func (b *Builder) WriteAt(p []byte, off int64) (int, error) {
	g := b.g
	if off < 0 || uint64(off)%g.dbs != 0 || uint64(len(p))%g.dbs != 0 {
		return 0, fmt.Errorf("%w: verity builder: write of %d bytes at offset %d is not in whole %d-byte blocks", ErrInvalidParams, len(p), off, g.dbs)
	}
	first, n := uint64(off)/g.dbs, uint64(len(p))/g.dbs
	if first > g.dataBlocks || n > g.dataBlocks-first {
		return 0, fmt.Errorf("%w: verity builder: data blocks %d-%d past the last, %d", ErrInvalidParams, first, first+n-1, g.dataBlocks-1)
	}
	hs := b.hashers.Get().(*hasher)
	defer b.hashers.Put(hs)
	sums := make([]byte, 0, n*uint64(g.digestSize))
	for i := range n {
		sums = append(sums, hs.digest(p[i*g.dbs:(i+1)*g.dbs])...)
	}

	b.mu.Lock()
	var done []uint64 // level-0 hash blocks this write completed
	for i := range n {
		blk := first + i
		if b.err == nil && b.seen[blk/64]&(1<<(blk%64)) != 0 {
			b.err = fmt.Errorf("%w: verity builder: data block %d given twice", ErrInvalidParams, blk)
		}
		if b.err != nil {
			err := b.err
			b.mu.Unlock()
			return 0, err
		}
		b.seen[blk/64] |= 1 << (blk % 64)
		sum := sums[i*uint64(g.digestSize) : (i+1)*uint64(g.digestSize)]
		if g.levels == 0 {
			b.single = append([]byte(nil), sum...)
			continue
		}
		hb := blk >> g.perBits
		h := b.pending[hb]
		if h == nil {
			h = &hashBlock{b: make([]byte, g.hbs), left: min(g.perBlock, g.dataBlocks-hb*g.perBlock)}
			b.pending[hb] = h
		}
		copy(g.slot(h.b, blk), sum)
		if h.left--; h.left == 0 {
			done = append(done, hb)
		}
	}
	blocks := make([][]byte, len(done))
	for i, hb := range done {
		blocks[i] = b.pending[hb].b
		delete(b.pending, hb)
	}
	b.mu.Unlock()

	// Each completed block is this call's alone: write and hash it
	// unlocked; its digest's place in upper is its own.
	for i, hb := range done {
		if _, err := b.hashDev.WriteAt(blocks[i], int64((g.levelStart[0]+hb)*g.hbs)); err != nil {
			err = fmt.Errorf("verity: writing hash level 0: %w", err)
			b.fail(err)
			return 0, err
		}
		copy(b.upper[hb*uint64(g.digestSize):], hs.digest(blocks[i]))
	}
	b.mu.Lock()
	b.full += uint64(len(done))
	b.mu.Unlock()
	return len(p), nil
}

func (b *Builder) fail(err error) {
	b.mu.Lock()
	if b.err == nil {
		b.err = err
	}
	b.mu.Unlock()
}

// Finish writes the upper levels of the tree and the superblock and
// returns the tree's parameters and root hash, as Format does. Every data
// block must have been written, and no WriteAt may run any more. A
// non-empty uuid replaces opts.UUID (it may depend on the data, such as a
// filesystem's own UUID).
func (b *Builder) Finish(ctx context.Context, uuid string) (*Params, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err != nil {
		return nil, b.err
	}
	g, p := b.g, b.p
	if (g.levels == 0 && b.single == nil) || (g.levels > 0 && b.full != g.levelSize[0]) {
		for blk := range g.dataBlocks {
			if b.seen[blk/64]&(1<<(blk%64)) == 0 {
				return nil, fmt.Errorf("%w: verity builder: data block %d was never written", ErrTruncated, blk)
			}
		}
	}
	if uuid != "" && p.Superblock {
		if _, err := parseUUID(uuid); err != nil {
			return nil, err
		}
		p.UUID = uuid
	}
	root := b.single
	if g.levels > 0 {
		var err error
		if root, err = g.buildUpper(b.hashDev, b.upper, g.newHasher(p.Salt)); err != nil {
			return nil, err
		}
	}
	if p.Superblock {
		if err := writeSuperblock(b.hashDev, p, g); err != nil {
			return nil, err
		}
	}
	p.RootHash = root
	p.HashBlocks = g.treeBlocks()
	p.HashDeviceSize = g.hashEnd * g.hbs
	b.err = fmt.Errorf("%w: verity builder: finished", ErrInvalidParams)
	return p, nil
}
