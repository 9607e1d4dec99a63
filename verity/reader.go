package verity

import (
	"bytes"
	"fmt"
	"io"
	"sync"
)

// maxCachedHashBlocks bounds the verified hash blocks a Reader keeps
// (4096 blocks of 4 KiB: 16 MiB, covering 2 GiB of data at level 0).
const maxCachedHashBlocks = 4096

// A Reader reads a verity-protected data device, checking every block it
// returns against the tree, as the kernel's dm-verity does. Reads of a
// corrupted block fail with a *CorruptionError; they never return
// unverified bytes. Verified hash blocks are cached. It is safe for
// concurrent use.
type Reader struct {
	data, hash io.ReaderAt
	p          Params
	g          *geometry

	mu    sync.Mutex
	cache map[uint64][]byte // hash device block → verified contents
}

// NewReader returns a Reader for data protected by the tree in hashDev
// described by p (including its root hash).
func NewReader(data, hashDev io.ReaderAt, p *Params) (*Reader, error) {
	g, err := newGeometry(p)
	if err != nil {
		return nil, err
	}
	if len(p.RootHash) != g.digestSize {
		return nil, fmt.Errorf("%w: root hash of %d bytes, %s digests have %d", ErrInvalidParams, len(p.RootHash), p.Algorithm, g.digestSize)
	}
	return &Reader{data: data, hash: hashDev, p: *p, g: g, cache: make(map[uint64][]byte)}, nil
}

// Size is the number of verified bytes the Reader serves.
func (r *Reader) Size() int64 { return int64(r.p.DataSize()) }

// ReadAt implements io.ReaderAt over the verified data.
func (r *Reader) ReadAt(b []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("verity: negative offset %d", off)
	}
	size := r.Size()
	if off >= size {
		return 0, io.EOF
	}
	want := len(b)
	if int64(want) > size-off {
		b = b[:size-off]
	}
	hs := r.g.newHasher(r.p.Salt)
	block := make([]byte, r.g.dbs)
	n := 0
	for n < len(b) {
		pos := uint64(off) + uint64(n)
		db := pos / r.g.dbs
		if err := readFull(r.data, block, db*r.g.dbs, fmt.Sprintf("data block %d", db)); err != nil {
			return n, err
		}
		sum, err := r.dataDigest(hs, db)
		if err != nil {
			return n, err
		}
		if !bytes.Equal(hs.digest(block), sum) {
			return n, &CorruptionError{Area: DataArea, Block: db, Offset: db * r.g.dbs}
		}
		n += copy(b[n:], block[pos%r.g.dbs:])
	}
	if n < want {
		return n, io.EOF
	}
	return n, nil
}

// dataDigest returns the verified digest of data block db.
func (r *Reader) dataDigest(hs *hasher, db uint64) ([]byte, error) {
	if r.g.levels == 0 {
		return r.p.RootHash, nil
	}
	blk, err := r.hashBlock(hs, 0, db/r.g.perBlock)
	if err != nil {
		return nil, err
	}
	return r.g.slot(blk, db), nil
}

// hashBlock returns block idx of level lvl after checking it, and the path
// above it, up to the root.
func (r *Reader) hashBlock(hs *hasher, lvl int, idx uint64) ([]byte, error) {
	dev := r.g.levelStart[lvl] + idx
	r.mu.Lock()
	blk, ok := r.cache[dev]
	r.mu.Unlock()
	if ok {
		return blk, nil
	}
	want := r.p.RootHash
	if lvl < r.g.levels-1 {
		parent, err := r.hashBlock(hs, lvl+1, idx/r.g.perBlock)
		if err != nil {
			return nil, err
		}
		want = r.g.slot(parent, idx)
	}
	blk = make([]byte, r.g.hbs)
	if err := readFull(r.hash, blk, dev*r.g.hbs, fmt.Sprintf("hash block %d", dev)); err != nil {
		return nil, err
	}
	if !bytes.Equal(hs.digest(blk), want) {
		return nil, &CorruptionError{Area: HashArea, Block: dev, Level: lvl, Offset: dev * r.g.hbs}
	}
	r.mu.Lock()
	if len(r.cache) >= maxCachedHashBlocks {
		clear(r.cache)
	}
	r.cache[dev] = blk
	r.mu.Unlock()
	return blk, nil
}
