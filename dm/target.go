package dm

import (
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// SectorSize is the unit of device-mapper table offsets and lengths.
const SectorSize = 512

// A Target is one line of a device-mapper table.
type Target interface {
	// TableLine renders and validates the target.
	TableLine() (TableLine, error)
}

// TableLine is one rendered table line: Length sectors starting at sector
// Start of the mapped device are handled by target Type with Params. Table
// and Status return TableLines; a TableLine is itself a Target, for target
// types without a constructor here.
//
// Params of a crypt target hold the key: do not log them.
type TableLine struct {
	Start  uint64 // first sector of the mapped device covered by this line
	Length uint64 // number of sectors
	Type   string // target type, e.g. "verity", "crypt", "linear"
	Params string // target parameters (or, from Status, the status text)
}

// TableLine implements Target.
func (l TableLine) TableLine() (TableLine, error) {
	if l.Length == 0 {
		return TableLine{}, fmt.Errorf("dm: %s target: zero length", l.Type)
	}
	if l.Type == "" || len(l.Type) >= typeNameLen || strings.ContainsAny(l.Type, " \t\n\x00") {
		return TableLine{}, fmt.Errorf("dm: invalid target type %q", l.Type)
	}
	return l, nil
}

// LinearTarget maps Length sectors onto Device starting at sector Offset.
type LinearTarget struct {
	Start  uint64 // first sector in the mapped device
	Length uint64 // sectors
	Device string // block device path or "major:minor"
	Offset uint64 // first sector on Device
}

// TableLine implements Target: "<dev> <offset>".
func (t LinearTarget) TableLine() (TableLine, error) {
	if err := checkDevice("linear", t.Device); err != nil {
		return TableLine{}, err
	}
	return TableLine{Start: t.Start, Length: t.Length, Type: "linear",
		Params: t.Device + " " + strconv.FormatUint(t.Offset, 10)}.TableLine()
}

// CorruptionMode says what dm-verity does when a block fails verification.
type CorruptionMode int

const (
	// CorruptionEIO fails the read with EIO (the kernel default).
	CorruptionEIO CorruptionMode = iota
	// CorruptionIgnore logs and returns the corrupted data.
	CorruptionIgnore
	// CorruptionRestart restarts the machine.
	CorruptionRestart
	// CorruptionPanic panics the kernel (Linux 5.9 and later).
	CorruptionPanic
)

// VerityTarget is a dm-verity mapping: reads of the data device are checked
// against a hash tree on the hash device whose root is RootHash. The fields
// follow Documentation/admin-guide/device-mapper/verity.rst and what
// veritysetup format prints.
type VerityTarget struct {
	Start uint64 // first sector in the mapped device, normally 0

	// LegacyFormat selects hash type 0, the original Chrome OS layout.
	// False selects hash type 1, what veritysetup writes by default.
	LegacyFormat bool

	DataDevice     string // block device path or "major:minor"
	HashDevice     string // may equal DataDevice when the tree is appended
	DataBlockSize  uint32 // bytes; 0 means 4096
	HashBlockSize  uint32 // bytes; 0 means 4096
	DataBlocks     uint64 // number of data blocks covered (and mapped)
	HashStartBlock uint64 // offset of the tree's top level, in hash blocks
	Algorithm      string // kernel hash name; "" means "sha256"
	RootHash       []byte
	Salt           []byte // nil or empty means no salt

	OnCorruption     CorruptionMode
	IgnoreZeroBlocks bool // blocks whose hash is the zero-block hash read as zeroes
	CheckAtMostOnce  bool // verify each data block only on its first read
}

// digestSizes are the digest lengths of the algorithms we know, used to
// catch a truncated root hash before the kernel rejects it with EINVAL.
var digestSizes = map[string]int{"sha1": 20, "sha256": 32, "sha512": 64}

// TableLine implements Target.
func (t VerityTarget) TableLine() (TableLine, error) {
	dbs, hbs := orDefault(t.DataBlockSize, 4096), orDefault(t.HashBlockSize, 4096)
	alg := t.Algorithm
	if alg == "" {
		alg = "sha256"
	}
	for _, bs := range []uint32{dbs, hbs} {
		if bs < SectorSize || bs&(bs-1) != 0 {
			return TableLine{}, fmt.Errorf("dm: verity: block size %d is not a power of two of at least %d", bs, SectorSize)
		}
	}
	if err := checkDevice("verity data", t.DataDevice); err != nil {
		return TableLine{}, err
	}
	if err := checkDevice("verity hash", t.HashDevice); err != nil {
		return TableLine{}, err
	}
	if t.DataBlocks == 0 {
		return TableLine{}, errors.New("dm: verity: zero data blocks")
	}
	if strings.ContainsAny(alg, " \t\n\x00") {
		return TableLine{}, fmt.Errorf("dm: verity: invalid algorithm %q", alg)
	}
	if n, ok := digestSizes[alg]; ok && len(t.RootHash) != n {
		return TableLine{}, fmt.Errorf("dm: verity: root hash is %d bytes, %s digests are %d", len(t.RootHash), alg, n)
	}
	if len(t.RootHash) == 0 {
		return TableLine{}, errors.New("dm: verity: empty root hash")
	}
	version := 1
	if t.LegacyFormat {
		version = 0
	}
	salt := "-"
	if len(t.Salt) > 0 {
		salt = hex.EncodeToString(t.Salt)
	}
	params := fmt.Sprintf("%d %s %s %d %d %d %d %s %s %s", version, t.DataDevice, t.HashDevice,
		dbs, hbs, t.DataBlocks, t.HashStartBlock, alg, hex.EncodeToString(t.RootHash), salt)

	var opts []string
	switch t.OnCorruption {
	case CorruptionEIO:
	case CorruptionIgnore:
		opts = append(opts, "ignore_corruption")
	case CorruptionRestart:
		opts = append(opts, "restart_on_corruption")
	case CorruptionPanic:
		opts = append(opts, "panic_on_corruption")
	default:
		return TableLine{}, fmt.Errorf("dm: verity: unknown corruption mode %d", t.OnCorruption)
	}
	if t.IgnoreZeroBlocks {
		opts = append(opts, "ignore_zero_blocks")
	}
	if t.CheckAtMostOnce {
		opts = append(opts, "check_at_most_once")
	}
	params += optionalArgs(opts)

	return TableLine{Start: t.Start, Length: t.DataBlocks * uint64(dbs/SectorSize), Type: "verity", Params: params}.TableLine()
}

// CryptTarget is a dm-crypt mapping: Length sectors encrypted with Cipher
// and Key, stored on Device from sector Offset. See
// Documentation/admin-guide/device-mapper/dm-crypt.rst.
type CryptTarget struct {
	Start    uint64 // first sector in the mapped device
	Length   uint64 // sectors
	Cipher   string // kernel cipher spec, e.g. "aes-xts-plain64"
	Key      []byte // raw key bytes, rendered in hex; never logged
	IVOffset uint64 // added to the sector number to form the IV
	Device   string // block device path or "major:minor"
	Offset   uint64 // first sector of the ciphertext on Device

	// SectorSize is the encryption sector size in bytes (512 to 4096, a
	// power of two); 0 means 512.
	SectorSize uint32
	// IVLargeSectors makes the IV count SectorSize units instead of
	// 512-byte sectors (what LUKS2 uses with 4096-byte sectors).
	IVLargeSectors bool

	AllowDiscards       bool
	SameCPUCrypt        bool
	SubmitFromCryptCPUs bool
	NoReadWorkqueue     bool
	NoWriteWorkqueue    bool
}

// TableLine implements Target. The returned Params contain the key.
func (t CryptTarget) TableLine() (TableLine, error) {
	if t.Cipher == "" || strings.ContainsAny(t.Cipher, " \t\n\x00") {
		return TableLine{}, fmt.Errorf("dm: crypt: invalid cipher %q", t.Cipher)
	}
	if err := checkDevice("crypt", t.Device); err != nil {
		return TableLine{}, err
	}
	key := "-"
	if len(t.Key) > 0 {
		key = hex.EncodeToString(t.Key)
	}
	params := fmt.Sprintf("%s %s %d %s %d", t.Cipher, key, t.IVOffset, t.Device, t.Offset)

	var opts []string
	for _, o := range []struct {
		on   bool
		name string
	}{
		{t.AllowDiscards, "allow_discards"},
		{t.SameCPUCrypt, "same_cpu_crypt"},
		{t.SubmitFromCryptCPUs, "submit_from_crypt_cpus"},
		{t.NoReadWorkqueue, "no_read_workqueue"},
		{t.NoWriteWorkqueue, "no_write_workqueue"},
	} {
		if o.on {
			opts = append(opts, o.name)
		}
	}
	if ss := t.SectorSize; ss != 0 && ss != SectorSize {
		if ss > 4096 || ss&(ss-1) != 0 || ss < SectorSize {
			return TableLine{}, fmt.Errorf("dm: crypt: sector size %d is not a power of two from 512 to 4096", ss)
		}
		if t.Length%uint64(ss/SectorSize) != 0 {
			return TableLine{}, fmt.Errorf("dm: crypt: length %d sectors is not a multiple of the %d-byte sector size", t.Length, ss)
		}
		opts = append(opts, "sector_size:"+strconv.FormatUint(uint64(ss), 10))
	}
	if t.IVLargeSectors {
		opts = append(opts, "iv_large_sectors")
	}
	params += optionalArgs(opts)
	return TableLine{Start: t.Start, Length: t.Length, Type: "crypt", Params: params}.TableLine()
}

// optionalArgs renders " <count> <arg>..." or nothing.
func optionalArgs(opts []string) string {
	if len(opts) == 0 {
		return ""
	}
	return " " + strconv.Itoa(len(opts)) + " " + strings.Join(opts, " ")
}

func checkDevice(what, dev string) error {
	if dev == "" || strings.ContainsAny(dev, " \t\n\x00") {
		return fmt.Errorf("dm: %s: invalid device %q", what, dev)
	}
	return nil
}

func orDefault(v, def uint32) uint32 {
	if v == 0 {
		return def
	}
	return v
}

// renderTable validates targets and checks that they cover the device from
// sector 0 without gaps or overlaps, as the kernel requires.
func renderTable(targets []Target) ([]TableLine, error) {
	if len(targets) == 0 {
		return nil, errors.New("dm: no targets")
	}
	lines := make([]TableLine, 0, len(targets))
	var next uint64
	for i, t := range targets {
		l, err := t.TableLine()
		if err != nil {
			return nil, fmt.Errorf("target %d: %w", i, err)
		}
		if l.Start != next {
			return nil, fmt.Errorf("dm: target %d (%s) starts at sector %d, want %d (targets must be contiguous from 0)", i, l.Type, l.Start, next)
		}
		next = l.Start + l.Length
		lines = append(lines, l)
	}
	return lines, nil
}
