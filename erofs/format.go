package erofs

import (
	"encoding/binary"
	"hash/crc32"
)

// On-disk constants, from the kernel's fs/erofs/erofs_fs.h (the layout
// shared by Linux and erofs-utils).
const (
	// BlockSize is the only block size Write produces.
	BlockSize = 4096
	blkBits   = 12

	superOffset = 1024
	superSize   = 128
	magic       = 0xE0F5E1E2

	featureCompatSBChecksum = 0x1
	featureCompatMtime      = 0x2

	layoutFlatPlain  = 0
	layoutFlatInline = 2

	compactSize  = 32
	extendedSize = 64
	direntSize   = 12
	ibodyHeader  = 12 // erofs_xattr_ibody_header
	maxNameLen   = 255

	// Directory entry file types (EROFS_FT_*).
	ftUnknown = 0
	ftRegular = 1
	ftDir     = 2
	ftChrdev  = 3
	ftBlkdev  = 4
	ftFIFO    = 5
	ftSocket  = 6
	ftSymlink = 7

	// Extended attribute name indexes (EROFS_XATTR_INDEX_*).
	xattrUser        = 1
	xattrACLAccess   = 2
	xattrACLDefault  = 3
	xattrTrusted     = 4
	xattrSecurity    = 6
	xattrLongPrefix  = 0x80
	maxXattrIcount   = 0xffff
	maxXattrValueLen = 0xffff
)

var le = binary.LittleEndian

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// sbChecksum is the superblock checksum: the kernel's crc32c(~0, ...) over
// the rest of block 0 from the superblock on, with the checksum field zero.
// The kernel's crc32c has no final inversion, Go's has, hence the ^.
func sbChecksum(fromSuper []byte) uint32 {
	return ^crc32.Checksum(fromSuper, castagnoli)
}

// xattrPrefixes maps the name indexes to their prefixes. The two ACL
// entries are whole names (their suffix is empty).
var xattrPrefixes = [...]struct {
	index  uint8
	prefix string
}{
	{xattrUser, "user."},
	{xattrACLAccess, "system.posix_acl_access"},
	{xattrACLDefault, "system.posix_acl_default"},
	{xattrTrusted, "trusted."},
	{xattrSecurity, "security."},
}

func prefixOf(index uint8) (string, bool) {
	for _, p := range xattrPrefixes {
		if p.index == index {
			return p.prefix, true
		}
	}
	return "", false
}

// encodeDev is the kernel's new_encode_dev.
func encodeDev(major, minor uint32) uint32 {
	return minor&0xff | major<<8 | (minor&^0xff)<<12
}

// decodeDev is the kernel's new_decode_dev.
func decodeDev(dev uint32) (major, minor uint32) {
	return (dev & 0xfff00) >> 8, dev&0xff | (dev>>12)&0xfff00
}
