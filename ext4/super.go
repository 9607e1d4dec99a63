package ext4

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// Superblock fields (Documentation/filesystems/ext4/super.rst).
const (
	sbOffset         = 1024  // primary superblock, bytes into the device
	sbSize           = 1024  // struct ext4_super_block
	sbBlocksPerGroup = 0x20  // s_blocks_per_group
	sbMaxMntCount    = 0x36  // s_max_mnt_count
	sbMagic          = 0x38  // s_magic
	sbBlockGroupNr   = 0x5A  // s_block_group_nr
	sbChecksum       = 0x3FC // s_checksum: crc32c of the bytes before it
	ext4Magic        = 0xEF53
)

var (
	castagnoli = crc32.MakeTable(crc32.Castagnoli)
	// errSuperblock: a superblock copy is not where or what we expect.
	errSuperblock = errors.New("ext4: unexpected superblock")
)

// sbCsum is the metadata_csum superblock checksum: the kernel's
// ext4_superblock_csum, crc32c seeded with ~0 and not inverted at the end.
func sbCsum(sb []byte) uint32 {
	return ^crc32.Checksum(sb[:sbChecksum], castagnoli)
}

// backupGroups lists the groups holding a superblock under sparse_super:
// 0, 1 and the powers of 3, 5 and 7 (super.rst, "sparse_super").
func backupGroups(groups uint64) []uint64 {
	gs := []uint64{0}
	if groups > 1 {
		gs = append(gs, 1)
	}
	for _, base := range []uint64{3, 5, 7} {
		for g := base; g < groups; g *= base {
			gs = append(gs, g)
		}
	}
	return gs
}

// disableMountCount sets s_max_mnt_count to -1 in every superblock copy,
// as mke2fs does since 1.42: the library writes 100, after which the
// kernel warns on every mount that e2fsck is due, and the enclave mounts
// once per launch and never runs e2fsck (the journal is its recovery).
// It also sets each backup's s_block_group_nr to its group, as mke2fs does
// (the library leaves 0). Each copy's magic, group number and checksum are
// verified before it is rewritten, so a change in the library's layout
// fails here rather than corrupting a copy.
func disableMountCount(s *storage, blocks uint64) error {
	sb := make([]byte, sbSize)
	if _, err := s.ReadAt(sb, sbOffset); err != nil {
		return fmt.Errorf("ext4: reading superblock: %w", err)
	}
	bpg := uint64(binary.LittleEndian.Uint32(sb[sbBlocksPerGroup:]))
	if bpg == 0 {
		return fmt.Errorf("%w: 0 blocks per group", errSuperblock)
	}
	for _, g := range backupGroups((blocks + bpg - 1) / bpg) {
		off := int64(g * bpg * BlockSize)
		if g == 0 {
			off = sbOffset
		}
		if _, err := s.ReadAt(sb, off); err != nil {
			return fmt.Errorf("ext4: reading superblock copy in group %d: %w", g, err)
		}
		if nr := uint64(binary.LittleEndian.Uint16(sb[sbBlockGroupNr:])); binary.LittleEndian.Uint16(sb[sbMagic:]) != ext4Magic ||
			(nr != 0 && nr != g) ||
			binary.LittleEndian.Uint32(sb[sbChecksum:]) != sbCsum(sb) {
			return fmt.Errorf("%w: copy in group %d", errSuperblock, g)
		}
		binary.LittleEndian.PutUint16(sb[sbMaxMntCount:], 0xFFFF)
		binary.LittleEndian.PutUint16(sb[sbBlockGroupNr:], uint16(g))
		binary.LittleEndian.PutUint32(sb[sbChecksum:], sbCsum(sb))
		if _, err := s.WriteAt(sb, off); err != nil {
			return fmt.Errorf("ext4: writing superblock copy in group %d: %w", g, err)
		}
	}
	return nil
}
