package verity

import (
	"errors"
	"fmt"
)

var (
	// ErrUnknownAlgorithm is returned for a hash algorithm this package
	// does not implement.
	ErrUnknownAlgorithm = errors.New("verity: unknown hash algorithm")
	// ErrBadSuperblock is returned when the bytes at the hash offset are not
	// a valid verity superblock.
	ErrBadSuperblock = errors.New("verity: bad superblock")
	// ErrInvalidParams is returned for parameters that describe no valid
	// tree (block sizes, offsets, sizes, salt).
	ErrInvalidParams = errors.New("verity: invalid parameters")
	// ErrTruncated is returned when the data or hash area is shorter than
	// the parameters require.
	ErrTruncated = errors.New("verity: area truncated")
	// ErrCorrupt is matched (with errors.Is) by every *CorruptionError.
	ErrCorrupt = errors.New("verity: corruption detected")
)

// Area says which part of a verity image a block belongs to.
type Area int

const (
	// DataArea is the data device's blocks.
	DataArea Area = iota
	// HashArea is the hash tree's blocks.
	HashArea
)

func (a Area) String() string {
	if a == DataArea {
		return "data"
	}
	return "hash"
}

// A CorruptionError reports the first block whose digest does not match
// the tree. For the data area Block is the data block number; for the hash
// area it is the block's index on the hash device (in hash blocks, counted
// from the start of the device, as veritysetup reports it) and Level its
// tree level (0 holds the data blocks' digests). A mismatch of the top
// block against the root hash is reported with Level set to the top level.
type CorruptionError struct {
	Area  Area
	Block uint64
	Level int
	// Offset is the byte offset of the block on its device.
	Offset uint64
}

func (e *CorruptionError) Error() string {
	if e.Area == DataArea {
		return fmt.Sprintf("verity: data block %d (offset %d) does not match the hash tree", e.Block, e.Offset)
	}
	return fmt.Sprintf("verity: hash block %d (level %d, offset %d) does not match the hash tree", e.Block, e.Level, e.Offset)
}

// Is makes errors.Is(err, ErrCorrupt) true for a CorruptionError.
func (e *CorruptionError) Is(target error) bool { return target == ErrCorrupt }
