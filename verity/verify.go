package verity

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
)

// Verify checks every data block and every hash block of a verity image
// against p.RootHash, as "veritysetup verify" does. It returns nil when the
// image is intact, a *CorruptionError (errors.Is ErrCorrupt) naming the
// first bad block in device order (hash blocks are checked from the root
// down, before the data they cover), or an error for unreadable or
// truncated areas.
func Verify(ctx context.Context, data, hashDev io.ReaderAt, p *Params) error {
	g, err := newGeometry(p)
	if err != nil {
		return err
	}
	if len(p.RootHash) != g.digestSize {
		return fmt.Errorf("%w: root hash of %d bytes, %s digests have %d", ErrInvalidParams, len(p.RootHash), p.Algorithm, g.digestSize)
	}
	// Probe the ends of both areas first: a short device is reported as
	// such, and a hostile superblock cannot make us allocate for a tree
	// the device does not hold.
	probe := make([]byte, 1)
	if err := readFull(data, probe, p.DataSize()-1, "end of data area"); err != nil {
		return err
	}
	if g.levels > 0 {
		if err := readFull(hashDev, probe, g.hashEnd*g.hbs-1, "end of hash tree"); err != nil {
			return err
		}
	}
	hs := g.newHasher(p.Salt)
	if g.levels == 0 {
		block := make([]byte, g.dbs)
		if err := readFull(data, block, 0, "data block 0"); err != nil {
			return err
		}
		if !bytes.Equal(hs.digest(block), p.RootHash) {
			return &CorruptionError{Area: DataArea, Block: 0}
		}
		return nil
	}
	// Levels 1 and up are small: read them whole and check them top-down.
	// They lie contiguously before level 0, top level first.
	upperStart := g.levelStart[g.levels-1]
	upper := make([]byte, (g.levelStart[0]-upperStart)*g.hbs)
	if err := readFull(hashDev, upper, upperStart*g.hbs, "hash tree"); err != nil {
		return err
	}
	// parent returns the verified digest that block idx of level lvl must
	// have: the root hash for the top level, else a slot of level lvl+1.
	parent := func(lvl int, idx uint64) []byte {
		if lvl == g.levels-1 {
			return p.RootHash
		}
		blk := g.levelStart[lvl+1] + idx/g.perBlock - upperStart
		return g.slot(upper[blk*g.hbs:(blk+1)*g.hbs], idx)
	}
	for lvl := g.levels - 1; lvl >= 1; lvl-- {
		for i := range g.levelSize[lvl] {
			blk := g.levelStart[lvl] + i
			off := (blk - upperStart) * g.hbs
			if !bytes.Equal(hs.digest(upper[off:off+g.hbs]), parent(lvl, i)) {
				return &CorruptionError{Area: HashArea, Block: blk, Level: lvl, Offset: blk * g.hbs}
			}
		}
	}
	// Level 0 and the data, in parallel batches.
	return runBatches(ctx, 0, g.batches(), func() func(uint64) error {
		hs := g.newHasher(p.Salt)
		dbuf := make([]byte, g.batchBlocks()*g.perBlock*g.dbs)
		hbuf := make([]byte, g.batchBlocks()*g.hbs)
		return func(b uint64) error {
			hb0, nhb, db0, ndb := g.batchRange(b)
			h := hbuf[:nhb*g.hbs]
			if err := readFull(hashDev, h, (g.levelStart[0]+hb0)*g.hbs, "hash tree level 0"); err != nil {
				return err
			}
			for i := range nhb {
				if !bytes.Equal(hs.digest(h[i*g.hbs:(i+1)*g.hbs]), parent(0, hb0+i)) {
					blk := g.levelStart[0] + hb0 + i
					return &CorruptionError{Area: HashArea, Block: blk, Level: 0, Offset: blk * g.hbs}
				}
			}
			d := dbuf[:ndb*g.dbs]
			if err := readFull(data, d, db0*g.dbs, fmt.Sprintf("data blocks %d-%d", db0, db0+ndb-1)); err != nil {
				return err
			}
			for i := range ndb {
				if !bytes.Equal(hs.digest(d[i*g.dbs:(i+1)*g.dbs]), h[i*uint64(g.slotSize):i*uint64(g.slotSize)+uint64(g.digestSize)]) {
					return &CorruptionError{Area: DataArea, Block: db0 + i, Offset: (db0 + i) * g.dbs}
				}
			}
			return nil
		}
	})
}

// OpenParams reads the tree parameters of a hash device: from its
// superblock at hashOffset when p is nil, else p itself (for trees formatted
// without a superblock, whose parameters must come from elsewhere). The
// root hash is set to rootHash. It is the userspace twin of
// "veritysetup open/verify DATA HASH ROOT [--hash-offset N]".
func OpenParams(hashDev io.ReaderAt, hashOffset uint64, rootHash []byte, p *Params) (*Params, error) {
	if p == nil {
		sb, err := ReadSuperblock(hashDev, hashOffset)
		if err != nil {
			return nil, err
		}
		p = sb.Params(hashOffset, rootHash)
	} else {
		c := *p
		c.HashOffset, c.RootHash = hashOffset, rootHash
		p = &c
	}
	g, err := newGeometry(p)
	if err != nil {
		return nil, err
	}
	p.HashBlocks = g.treeBlocks()
	p.HashDeviceSize = g.hashEnd * g.hbs
	return p, nil
}

// VerifyFile verifies the data file against the hash file (which may be
// the same path) with the parameters from the superblock at hashOffset, or
// from p when the tree has no superblock. Errors name the files.
func VerifyFile(ctx context.Context, dataPath, hashPath string, hashOffset uint64, rootHash []byte, p *Params) (*Params, error) {
	df, err := os.Open(dataPath)
	if err != nil {
		return nil, fmt.Errorf("verity: %w", err)
	}
	defer df.Close()
	hf, err := os.Open(hashPath)
	if err != nil {
		return nil, fmt.Errorf("verity: %w", err)
	}
	defer hf.Close()
	p, err = OpenParams(hf, hashOffset, rootHash, p)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", hashPath, err)
	}
	if err := Verify(ctx, df, hf, p); err != nil {
		if hashPath != dataPath {
			return p, fmt.Errorf("%s (hash tree in %s): %w", dataPath, hashPath, err)
		}
		return p, fmt.Errorf("%s: %w", dataPath, err)
	}
	return p, nil
}
