package verity

import (
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"fmt"
	"hash"
	"math/bits"
	"strings"
)

// Defaults used by Format, the same as veritysetup's.
const (
	DefaultAlgorithm = "sha256"
	DefaultBlockSize = 4096
	DefaultSaltSize  = 32
	// SuperblockSize is the size of the on-disk verity superblock.
	SuperblockSize = 512
	// maxLevels bounds the tree height, as cryptsetup's VERITY_MAX_LEVELS.
	maxLevels = 63
	// maxSaltSize is the room the superblock has for a salt.
	maxSaltSize = 256
)

// HexBytes is a byte string that marshals to and from lowercase hex, the
// way veritysetup prints root hashes and salts.
type HexBytes []byte

// String returns the hex form; an empty value prints as "-" as veritysetup
// prints an empty salt.
func (h HexBytes) String() string {
	if len(h) == 0 {
		return "-"
	}
	return hex.EncodeToString(h)
}

// MarshalText implements encoding.TextMarshaler.
func (h HexBytes) MarshalText() ([]byte, error) { return []byte(hex.EncodeToString(h)), nil }

// UnmarshalText implements encoding.TextUnmarshaler; "-" means empty.
func (h *HexBytes) UnmarshalText(b []byte) error {
	v, err := ParseHex(string(b))
	if err != nil {
		return err
	}
	*h = v
	return nil
}

// ParseHex parses a hex string as veritysetup's --salt and root hash
// arguments: "-" and "" mean empty.
func ParseHex(s string) ([]byte, error) {
	if s == "-" || s == "" {
		return []byte{}, nil
	}
	b, err := hex.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%w: %q is not hex: %v", ErrInvalidParams, s, err)
	}
	return b, nil
}

// Options control Format. The zero value formats like a plain
// "veritysetup format DATA HASH": sha256, 4096-byte blocks, a random
// 32-byte salt, a random UUID and a superblock at offset 0.
type Options struct {
	// Algorithm is the hash: "sha256" (default), "sha1", "sha384", "sha512".
	Algorithm string
	// DataBlockSize and HashBlockSize are powers of two from 512 to the
	// page size veritysetup accepts; 0 means 4096.
	DataBlockSize, HashBlockSize uint32
	// Salt is the salt; nil means 32 random bytes, a non-nil empty slice
	// means no salt (veritysetup --salt -).
	Salt []byte
	// UUID is written to the superblock; "" means a random one.
	UUID string
	// NoSuperblock leaves the superblock out (veritysetup --no-superblock).
	NoSuperblock bool
	// DataBlocks is how many data blocks to cover; 0 means all of the data.
	DataBlocks uint64
	// HashOffset is the byte offset on the hash device where the superblock
	// (or, without one, the tree) starts. To append the tree to the data
	// file, pass the same file as data and hash and an offset at or past the
	// data's end. A multiple of 512 with a superblock, of HashBlockSize
	// without.
	HashOffset uint64
	// Workers is the number of hashing goroutines; 0 means GOMAXPROCS.
	Workers int
}

// Params describe a verity tree: everything the kernel's dm-verity table
// and veritysetup's open need, plus the root hash. It is what Format returns
// and what Verify and NewReader take. It marshals to JSON.
type Params struct {
	// HashType is the verity format version; only 1 is supported.
	HashType      uint32   `json:"hash_type"`
	Algorithm     string   `json:"hash_algorithm"`
	DataBlockSize uint32   `json:"data_block_size"`
	HashBlockSize uint32   `json:"hash_block_size"`
	DataBlocks    uint64   `json:"data_blocks"`
	Salt          HexBytes `json:"salt"`
	// HashOffset is where the superblock, or without one the tree, starts
	// on the hash device, in bytes.
	HashOffset uint64 `json:"hash_offset"`
	// Superblock says whether a verity superblock sits at HashOffset.
	Superblock bool `json:"superblock"`
	// UUID is the superblock's UUID, empty without a superblock.
	UUID string `json:"uuid,omitempty"`
	// HashBlocks is the number of blocks in the tree (not counting the
	// superblock), as veritysetup's "Hash blocks:".
	HashBlocks uint64 `json:"hash_blocks"`
	// HashDeviceSize is the byte size the hash device needs, up to the end
	// of the tree (veritysetup's "Hash device size").
	HashDeviceSize uint64   `json:"hash_device_size"`
	RootHash       HexBytes `json:"root_hash"`
}

// HashStartBlock is the tree's first block on the hash device in
// HashBlockSize units: the <hash_start_block> of a dm-verity table.
func (p *Params) HashStartBlock() uint64 {
	if !p.Superblock {
		return p.HashOffset / uint64(p.HashBlockSize)
	}
	return (p.HashOffset + SuperblockSize + uint64(p.HashBlockSize) - 1) / uint64(p.HashBlockSize)
}

// DataSize is the number of bytes of the data device the tree covers.
func (p *Params) DataSize() uint64 { return p.DataBlocks * uint64(p.DataBlockSize) }

// Table renders the dm-verity table parameters for the given data and hash
// devices, as the kernel documents them:
//
//	<version> <dev> <hash_dev> <data_block_size> <hash_block_size>
//	<num_data_blocks> <hash_start_block> <algorithm> <digest> <salt>
//
// followed by any optional arguments (e.g. "restart_on_corruption"). The
// table's length in 512-byte sectors is DataSize()/512.
func (p *Params) Table(dataDev, hashDev string, optional ...string) string {
	s := fmt.Sprintf("%d %s %s %d %d %d %d %s %s %s", p.HashType, dataDev, hashDev,
		p.DataBlockSize, p.HashBlockSize, p.DataBlocks, p.HashStartBlock(),
		p.Algorithm, hex.EncodeToString(p.RootHash), p.Salt.String())
	if len(optional) > 0 {
		s += fmt.Sprintf(" %d %s", len(optional), strings.Join(optional, " "))
	}
	return s
}

// newHash returns a constructor for the named algorithm.
func newHash(name string) (func() hash.Hash, error) {
	switch name {
	case "sha256":
		return sha256.New, nil
	case "sha1":
		return sha1.New, nil
	case "sha512":
		return sha512.New, nil
	case "sha384":
		return sha512.New384, nil
	}
	return nil, fmt.Errorf("%w %q (want sha256, sha1, sha384 or sha512)", ErrUnknownAlgorithm, name)
}

// geometry is the shape of a tree: where each level lives and how big it is.
type geometry struct {
	newHash    func() hash.Hash
	digestSize int
	slotSize   int // digest slot in a hash block: digestSize padded to a power of two
	perBlock   uint64
	perBits    uint
	dbs, hbs   uint64
	dataBlocks uint64
	levels     int
	// levelStart[i] is level i's first block on the hash device, levelSize[i]
	// its length in blocks; level 0 holds the data blocks' digests.
	levelStart, levelSize []uint64
	hashStart             uint64 // first tree block
	hashEnd               uint64 // one past the last tree block
}

func isBlockSize(n uint32) bool { return n >= 512 && n <= 1<<20 && n&(n-1) == 0 }

// newGeometry validates p's shape (not its root hash) and lays out the tree.
func newGeometry(p *Params) (*geometry, error) {
	if p.HashType != 1 {
		return nil, fmt.Errorf("%w: hash type %d (only format version 1 is supported)", ErrInvalidParams, p.HashType)
	}
	nh, err := newHash(p.Algorithm)
	if err != nil {
		return nil, err
	}
	if !isBlockSize(p.DataBlockSize) {
		return nil, fmt.Errorf("%w: data block size %d is not a power of two between 512 and 1 MiB", ErrInvalidParams, p.DataBlockSize)
	}
	if !isBlockSize(p.HashBlockSize) {
		return nil, fmt.Errorf("%w: hash block size %d is not a power of two between 512 and 1 MiB", ErrInvalidParams, p.HashBlockSize)
	}
	if len(p.Salt) > maxSaltSize {
		return nil, fmt.Errorf("%w: salt of %d bytes is longer than %d", ErrInvalidParams, len(p.Salt), maxSaltSize)
	}
	if p.DataBlocks == 0 {
		return nil, fmt.Errorf("%w: no data blocks", ErrInvalidParams)
	}
	if p.DataBlocks > (1<<63)/uint64(p.DataBlockSize) {
		return nil, fmt.Errorf("%w: %d data blocks overflow the device size", ErrInvalidParams, p.DataBlocks)
	}
	if p.Superblock && p.HashOffset%512 != 0 {
		return nil, fmt.Errorf("%w: hash offset %d is not a multiple of 512", ErrInvalidParams, p.HashOffset)
	}
	g := &geometry{newHash: nh, dbs: uint64(p.DataBlockSize), hbs: uint64(p.HashBlockSize), dataBlocks: p.DataBlocks}
	g.digestSize = nh().Size()
	if uint64(g.digestSize) > g.hbs {
		return nil, fmt.Errorf("%w: %s digests do not fit a %d-byte hash block", ErrInvalidParams, p.Algorithm, p.HashBlockSize)
	}
	g.perBits = uint(bits.Len64(g.hbs/uint64(g.digestSize)) - 1)
	g.perBlock = 1 << g.perBits
	g.slotSize = int(g.hbs >> g.perBits)

	for g.perBits*uint(g.levels) < 64 && (g.dataBlocks-1)>>(g.perBits*uint(g.levels)) != 0 {
		g.levels++
	}
	if g.levels > maxLevels {
		return nil, fmt.Errorf("%w: tree of %d levels", ErrInvalidParams, g.levels)
	}
	g.hashStart = p.HashStartBlock()
	if g.hashStart > (1<<63)/g.hbs {
		return nil, fmt.Errorf("%w: hash offset %d out of range", ErrInvalidParams, p.HashOffset)
	}
	g.levelStart = make([]uint64, g.levels)
	g.levelSize = make([]uint64, g.levels)
	pos := g.hashStart
	for i := g.levels - 1; i >= 0; i-- {
		shift := uint(i+1) * g.perBits
		var s uint64
		if shift >= 64 {
			s = 1
		} else {
			s = (g.dataBlocks-1)>>shift + 1
		}
		g.levelStart[i], g.levelSize[i] = pos, s
		pos += s
	}
	g.hashEnd = pos
	return g, nil
}

// treeBlocks is the number of hash blocks in the tree.
func (g *geometry) treeBlocks() uint64 { return g.hashEnd - g.hashStart }
