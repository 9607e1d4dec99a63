package crypt

import (
	"encoding/hex"
	"strconv"
	"strings"
)

// Volume is an unlocked LUKS2 volume: everything a dm-crypt table needs.
type Volume struct {
	UUID  string
	Label string
	// Cipher is the dm-crypt cipher spec, "aes-xts-plain64".
	Cipher string
	// Key is the volume key. Zero it (Volume.Zero) when done.
	Key []byte
	// SectorSize is the encryption sector size in bytes (512..4096).
	SectorSize int
	// Offset is where the encrypted data starts on the data device, in
	// bytes.
	Offset int64
	// Size is the length of the encrypted data in bytes; 0 when Dynamic
	// and the data device's size is unknown.
	Size int64
	// Dynamic reports a segment that extends to the end of the device.
	Dynamic bool
	// IVTweak is the dm-crypt <iv_offset>: the IV of the segment's first
	// sector, in 512-byte units. Always 0: cryptsetup loads LUKS2 tables
	// with iv_offset 0, and Open refuses segments whose iv_tweak is not 0
	// (they occur only mid-reencryption).
	IVTweak uint64
	// Keyslot is the keyslot the key opened (Format: the slot it wrote).
	Keyslot int
}

// OffsetSectors is Offset in 512-byte sectors, the dm-crypt <offset>.
func (v *Volume) OffsetSectors() uint64 { return uint64(v.Offset) / 512 }

// Sectors is Size in 512-byte sectors, the length of the dm target.
func (v *Volume) Sectors() uint64 { return uint64(v.Size) / 512 }

// Params renders the dm-crypt target parameters for device (a path such as
// /dev/nbd1 or a major:minor pair):
//
//	<cipher> <key hex> <iv_offset> <device> <offset> [1 sector_size:N]
//
// exactly as cryptsetup would load them for this volume (it passes
// sector_size only when it is not 512 and never iv_large_sectors for LUKS2,
// so IVs count 512-byte units; SectorCipher matches).
func (v *Volume) Params(device string) string {
	var b strings.Builder
	b.WriteString(v.Cipher)
	b.WriteByte(' ')
	b.WriteString(hex.EncodeToString(v.Key))
	b.WriteByte(' ')
	b.WriteString(strconv.FormatUint(v.IVTweak, 10))
	b.WriteByte(' ')
	b.WriteString(device)
	b.WriteByte(' ')
	b.WriteString(strconv.FormatUint(v.OffsetSectors(), 10))
	if v.SectorSize != 512 {
		b.WriteString(" 1 sector_size:")
		b.WriteString(strconv.Itoa(v.SectorSize))
	}
	return b.String()
}

// Table renders a whole one-line dm table for device:
// "0 <sectors> crypt <params>". Size must be known.
func (v *Volume) Table(device string) string {
	return "0 " + strconv.FormatUint(v.Sectors(), 10) + " crypt " + v.Params(device)
}

// SectorCipher returns a userspace cipher that transforms data exactly as
// the dm-crypt table from Params does.
func (v *Volume) SectorCipher() (*SectorCipher, error) {
	return NewSectorCipher(v.Key, v.SectorSize, v.IVTweak)
}

// Zero overwrites the volume key in memory.
func (v *Volume) Zero() { clear(v.Key) }

// resolveSize fills in Size for a dynamic segment on a data device of
// devSize bytes (devSize < 0: unknown).
func (v *Volume) resolveSize(devSize int64) error {
	if !v.Dynamic || devSize < 0 {
		if !v.Dynamic && devSize >= 0 && v.Offset+v.Size > devSize {
			return corruptf("segment [%d, %d) extends past the %d-byte data device", v.Offset, v.Offset+v.Size, devSize)
		}
		return nil
	}
	if devSize <= v.Offset {
		return corruptf("data offset %d at or past the end of the %d-byte data device", v.Offset, devSize)
	}
	v.Size = (devSize - v.Offset) / int64(v.SectorSize) * int64(v.SectorSize)
	return nil
}
