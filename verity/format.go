package verity

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"os"
)

// Format builds the hash tree over the first dataSize bytes of data and
// writes it (and the superblock, unless opts.NoSuperblock) to hashDev. It
// returns the tree's parameters and root hash, the same values
// "veritysetup format" prints. data and hashDev may be the same file when
// opts.HashOffset lies at or past the data's end.
func Format(ctx context.Context, data io.ReaderAt, dataSize int64, hashDev io.WriterAt, opts Options) (*Params, error) {
	p, g, err := newTree(dataSize, opts)
	if err != nil {
		return nil, err
	}
	root, err := g.build(ctx, data, hashDev, p.Salt, opts.Workers)
	if err != nil {
		return nil, err
	}
	if p.Superblock {
		if err := writeSuperblock(hashDev, p, g); err != nil {
			return nil, err
		}
	}
	p.RootHash = root
	p.HashBlocks = g.treeBlocks()
	p.HashDeviceSize = g.hashEnd * g.hbs
	return p, nil
}

// FormatFile formats the tree of the data file into the hash file; they
// may be the same path (the tree appended at opts.HashOffset, which must
// then be at or past the data's end). The hash file is created if needed
// and synced before FormatFile returns. With opts.DataBlocks 0 the data
// file's size must be a multiple of the data block size.
func FormatFile(ctx context.Context, dataPath, hashPath string, opts Options) (*Params, error) {
	df, err := os.Open(dataPath)
	if err != nil {
		return nil, fmt.Errorf("verity: %w", err)
	}
	defer df.Close()
	dst, err := df.Stat()
	if err != nil {
		return nil, fmt.Errorf("verity: %w", err)
	}
	hf, err := os.OpenFile(hashPath, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("verity: %w", err)
	}
	defer hf.Close()
	hst, err := hf.Stat()
	if err != nil {
		return nil, fmt.Errorf("verity: %w", err)
	}
	dataSize := dst.Size()
	if !dst.Mode().IsRegular() {
		if dataSize, err = df.Seek(0, io.SeekEnd); err != nil {
			return nil, fmt.Errorf("verity: size of %s: %w", dataPath, err)
		}
	}
	if os.SameFile(dst, hst) {
		dbs := uint64(opts.DataBlockSize)
		if dbs == 0 {
			dbs = DefaultBlockSize
		}
		covered := uint64(dataSize)
		if opts.DataBlocks != 0 {
			covered = opts.DataBlocks * dbs
		}
		if opts.HashOffset < covered {
			return nil, fmt.Errorf("%w: %s: hash offset %d overlaps the data area (%d bytes)", ErrInvalidParams, dataPath, opts.HashOffset, covered)
		}
		if opts.DataBlocks == 0 {
			// Data ends where the tree starts; anything between is not data.
			dataSize = min(dataSize, int64(opts.HashOffset))
		}
	}
	p, err := Format(ctx, df, dataSize, hf, opts)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", dataPath, err)
	}
	if err := hf.Sync(); err != nil {
		return nil, fmt.Errorf("verity: sync %s: %w", hashPath, err)
	}
	return p, nil
}

// newTree checks opts for dataSize bytes of data and lays out the tree.
func newTree(dataSize int64, opts Options) (*Params, *geometry, error) {
	p, err := paramsFromOptions(dataSize, opts)
	if err != nil {
		return nil, nil, err
	}
	g, err := newGeometry(p)
	if err != nil {
		return nil, nil, err
	}
	if !p.Superblock && p.HashOffset%uint64(p.HashBlockSize) != 0 {
		return nil, nil, fmt.Errorf("%w: hash offset %d is not a multiple of the hash block size %d", ErrInvalidParams, p.HashOffset, p.HashBlockSize)
	}
	return p, g, nil
}

func paramsFromOptions(dataSize int64, o Options) (*Params, error) {
	p := &Params{
		HashType:      1,
		Algorithm:     o.Algorithm,
		DataBlockSize: o.DataBlockSize,
		HashBlockSize: o.HashBlockSize,
		DataBlocks:    o.DataBlocks,
		Salt:          o.Salt,
		HashOffset:    o.HashOffset,
		Superblock:    !o.NoSuperblock,
	}
	if p.Algorithm == "" {
		p.Algorithm = DefaultAlgorithm
	}
	if p.DataBlockSize == 0 {
		p.DataBlockSize = DefaultBlockSize
	}
	if p.HashBlockSize == 0 {
		p.HashBlockSize = DefaultBlockSize
	}
	if !isBlockSize(p.DataBlockSize) {
		return nil, fmt.Errorf("%w: data block size %d is not a power of two between 512 and 1 MiB", ErrInvalidParams, p.DataBlockSize)
	}
	if dataSize < 0 {
		return nil, fmt.Errorf("%w: negative data size %d", ErrInvalidParams, dataSize)
	}
	if p.DataBlocks == 0 {
		if dataSize%int64(p.DataBlockSize) != 0 {
			return nil, fmt.Errorf("%w: data size %d is not a multiple of the data block size %d", ErrInvalidParams, dataSize, p.DataBlockSize)
		}
		p.DataBlocks = uint64(dataSize) / uint64(p.DataBlockSize)
		if p.DataBlocks == 0 {
			return nil, fmt.Errorf("%w: data is empty", ErrInvalidParams)
		}
	} else if p.DataBlocks > uint64(dataSize)/uint64(p.DataBlockSize) {
		return nil, fmt.Errorf("%w: %d data blocks of %d bytes need %d bytes, data has %d", ErrTruncated, p.DataBlocks, p.DataBlockSize, p.DataBlocks*uint64(p.DataBlockSize), dataSize)
	}
	if p.Salt == nil {
		p.Salt = make([]byte, DefaultSaltSize)
		if _, err := rand.Read(p.Salt); err != nil {
			return nil, fmt.Errorf("verity: random salt: %w", err)
		}
	}
	if p.Superblock {
		p.UUID = o.UUID
		if p.UUID == "" {
			var u [16]byte
			if _, err := rand.Read(u[:]); err != nil {
				return nil, fmt.Errorf("verity: random UUID: %w", err)
			}
			u[6] = u[6]&0x0f | 0x40 // version 4
			u[8] = u[8]&0x3f | 0x80 // RFC 4122 variant
			p.UUID = formatUUID(u)
		} else if _, err := parseUUID(p.UUID); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// build hashes the data, writes the tree and returns the root hash.
func (g *geometry) build(ctx context.Context, data io.ReaderAt, hashDev io.WriterAt, salt []byte, workers int) ([]byte, error) {
	if g.levels == 0 {
		block := make([]byte, g.dbs)
		if err := readFull(data, block, 0, "data block 0"); err != nil {
			return nil, err
		}
		return append([]byte{}, g.newHasher(salt).digest(block)...), nil
	}
	// Level 0, in parallel: digests of the data blocks, packed into hash
	// blocks and written; the digests of those hash blocks are kept for
	// level 1.
	upper := make([]byte, g.levelSize[0]*uint64(g.digestSize))
	err := runBatches(ctx, workers, g.batches(), func() func(uint64) error {
		hs := g.newHasher(salt)
		dbuf := make([]byte, g.batchBlocks()*g.perBlock*g.dbs)
		hbuf := make([]byte, g.batchBlocks()*g.hbs)
		return func(b uint64) error {
			hb0, nhb, db0, ndb := g.batchRange(b)
			d := dbuf[:ndb*g.dbs]
			if err := readFull(data, d, db0*g.dbs, fmt.Sprintf("data blocks %d-%d", db0, db0+ndb-1)); err != nil {
				return err
			}
			h := hbuf[:nhb*g.hbs]
			clear(h)
			for i := range ndb {
				copy(h[i*uint64(g.slotSize):], hs.digest(d[i*g.dbs:(i+1)*g.dbs]))
			}
			if _, err := hashDev.WriteAt(h, int64((g.levelStart[0]+hb0)*g.hbs)); err != nil {
				return fmt.Errorf("verity: writing hash level 0: %w", err)
			}
			for i := range nhb {
				copy(upper[(hb0+i)*uint64(g.digestSize):], hs.digest(h[i*g.hbs:(i+1)*g.hbs]))
			}
			return nil
		}
	})
	if err != nil {
		return nil, err
	}
	return g.buildUpper(hashDev, upper, g.newHasher(salt))
}

// buildUpper writes levels 1 and up from upper, the digests of the level-0
// hash blocks, and returns the root hash. Each level is 1/perBlock of the
// one below: they are built in memory.
func (g *geometry) buildUpper(hashDev io.WriterAt, upper []byte, hs *hasher) ([]byte, error) {
	for lvl := 1; lvl < g.levels; lvl++ {
		n := uint64(len(upper) / g.digestSize)
		blocks := make([]byte, g.levelSize[lvl]*g.hbs)
		for i := range n {
			copy(blocks[i*uint64(g.slotSize):], upper[i*uint64(g.digestSize):(i+1)*uint64(g.digestSize)])
		}
		if _, err := hashDev.WriteAt(blocks, int64(g.levelStart[lvl]*g.hbs)); err != nil {
			return nil, fmt.Errorf("verity: writing hash level %d: %w", lvl, err)
		}
		upper = make([]byte, g.levelSize[lvl]*uint64(g.digestSize))
		for i := range g.levelSize[lvl] {
			copy(upper[i*uint64(g.digestSize):], hs.digest(blocks[i*g.hbs:(i+1)*g.hbs]))
		}
	}
	return upper, nil // the top level is one block: its digest is the root
}

// writeSuperblock writes the superblock at the hash offset and zeroes the
// rest of the space up to the tree.
func writeSuperblock(hashDev io.WriterAt, p *Params, g *geometry) error {
	u, err := parseUUID(p.UUID)
	if err != nil {
		return err
	}
	sb := Superblock{Version: 1, HashType: p.HashType, UUID: u, Algorithm: p.Algorithm,
		DataBlockSize: p.DataBlockSize, HashBlockSize: p.HashBlockSize, DataBlocks: p.DataBlocks, Salt: p.Salt}
	b, err := sb.MarshalBinary()
	if err != nil {
		return err
	}
	b = append(b, make([]byte, g.hashStart*g.hbs-p.HashOffset-SuperblockSize)...)
	if _, err := hashDev.WriteAt(b, int64(p.HashOffset)); err != nil {
		return fmt.Errorf("verity: writing superblock: %w", err)
	}
	return nil
}
