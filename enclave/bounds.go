package enclave

import (
	"errors"
	"fmt"

	"github.com/enclave-storage/enclave-storage/crypt"
	"github.com/enclave-storage/enclave-storage/ext4"
	"github.com/enclave-storage/enclave-storage/nbdclient"
)

// ErrBadGeometry: a size, block size or offset served by the parent (the
// export's, or a run volume header's) is out of range. Every such number
// is checked before it is used in arithmetic, an allocation or a kernel
// call: as PID 1, a panic is a kernel panic.
var ErrBadGeometry = errors.New("enclave: the parent serves an impossible geometry")

// CheckExport bounds the geometry of a negotiated export before it is
// attached: a size from 512 bytes to nbdclient.MaxExportSize, a minimum
// block size the kernel client can use (at most 4096), and whole blocks
// of it (and of 512 bytes). Whether a run volume has room for its LUKS
// header is checked where the header is read (cryptSectors).
func CheckExport(exp *nbdclient.Export) error {
	switch {
	case exp.Size < 512 || exp.Size > nbdclient.MaxExportSize:
		return fmt.Errorf("%w: export %q is %d bytes, want 512 to %d", ErrBadGeometry, exp.Name, exp.Size, uint64(nbdclient.MaxExportSize))
	case exp.BlockSize.Minimum > 4096:
		return fmt.Errorf("%w: export %q needs %d-byte blocks, more than the kernel client supports", ErrBadGeometry, exp.Name, exp.BlockSize.Minimum)
	case exp.Size%max(512, uint64(exp.BlockSize.Minimum)) != 0:
		return fmt.Errorf("%w: export %q is %d bytes, not whole %d-byte blocks", ErrBadGeometry, exp.Name, exp.Size, max(512, exp.BlockSize.Minimum))
	}
	return nil
}

// cryptSectors returns the length, in 512-byte sectors, of the dm-crypt
// target of a LUKS segment at offset (bytes) of length bytes (0: to the
// end of the device) on a device of size bytes, whole encryption sectors
// of sectorSize bytes. The header that gives offset and length comes from
// the parent: an offset or length outside the device is an error.
func cryptSectors(size, offset, length int64, sectorSize int) (uint64, error) {
	if sectorSize < 512 || sectorSize > 4096 || sectorSize&(sectorSize-1) != 0 {
		return 0, fmt.Errorf("%w: LUKS sector size %d", ErrBadGeometry, sectorSize)
	}
	if size < 0 || offset < 0 || offset%512 != 0 || offset >= size || length < 0 || length > size-offset {
		return 0, fmt.Errorf("%w: LUKS segment [%d, +%d) on a %d-byte device", ErrBadGeometry, offset, length, size)
	}
	if length == 0 {
		length = size - offset
	}
	sectors := uint64(length) / 512
	sectors -= sectors % uint64(sectorSize/512)
	if sectors == 0 {
		return 0, fmt.Errorf("%w: LUKS segment of %d bytes holds no %d-byte sector", ErrBadGeometry, length, sectorSize)
	}
	return sectors, nil
}

// checkRoom reports whether a run device of size bytes has room for what a
// first launch writes: the LUKS2 metadata and keyslots up to the data
// offset (opts's, or crypt's default), then an ext4 of at least
// ext4.MinSize. It is checked before anything is written: a volume that
// got its LUKS header but no filesystem would refuse every later launch
// (ErrNoFilesystem).
func checkRoom(size int64, opts *crypt.FormatOptions) error {
	off := int64(crypt.DefaultDataOffset)
	if opts != nil && opts.DataOffset != 0 {
		off = opts.DataOffset
	}
	if size < off+ext4.MinSize {
		return fmt.Errorf("%w: run volume of %d bytes, want at least %d (LUKS2 data offset %d + ext4 %d)",
			ErrBadGeometry, size, off+ext4.MinSize, off, ext4.MinSize)
	}
	return nil
}
