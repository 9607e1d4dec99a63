package crypt

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"regexp"
)

// Defaults Format uses for zero FormatOptions fields.
const (
	DefaultSectorSize       = 4096
	DefaultDataOffset       = 16 << 20 // bytes
	DefaultKeySize          = 64       // aes-xts-plain64 with AES-256
	DefaultDigestIterations = 1000     // cryptsetup's minimum; see FormatOptions
	metadataSize            = 16 << 10 // binary header + 12 KiB JSON, per copy
	maxKeyslotsSize         = 128 << 20
)

// FormatOptions tunes Format. The zero value (or nil) gives cryptsetup's
// luksFormat defaults except for the KDF (DefaultKDF).
type FormatOptions struct {
	// VolumeKey is the data encryption key; nil generates KeySize random
	// bytes.
	VolumeKey []byte
	// KeySize is the length of a generated volume key: 64 (AES-256-XTS,
	// default) or 32 (AES-128-XTS).
	KeySize int
	// KDF derives keyslot 0's key from the passphrase; zero means
	// DefaultKDF().
	KDF KDF
	// SectorSize is the encryption sector size: 512, 1024, 2048 or 4096
	// (default).
	SectorSize int
	// DataOffset is where encrypted data starts, in bytes: a multiple of
	// 4096 and of SectorSize (default 16 MiB). Everything before it is
	// metadata and keyslots.
	DataOffset int64
	// DataSize fixes the segment length in bytes; 0 makes it "dynamic"
	// (to the end of the device).
	DataSize int64
	// DigestIterations is the PBKDF2 count of the volume key digest. The
	// volume key is uniformly random, so the digest needs no stretching;
	// the default is cryptsetup's minimum.
	DigestIterations uint32
	// UUID (canonical 36-character form), Label and Subsystem (at most 47
	// bytes each). An empty UUID generates a random (version 4) one.
	UUID, Label, Subsystem string
	// Rand is the randomness source; nil means crypto/rand.
	Rand io.Reader
	// Tokens are written with the header under ids 0..len-1; their
	// Keyslots may name only keyslot 0, the one Format creates.
	Tokens []Token
}

var uuidRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

func newUUID(rnd io.Reader) (string, error) {
	var u [16]byte
	if _, err := io.ReadFull(rnd, u[:]); err != nil {
		return "", err
	}
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16]), nil
}

// Format writes a new LUKS2 header to dev with one keyslot (slot 0) opened
// by key, and returns the volume it describes. It overwrites the whole
// metadata and keyslots area (everything before the data offset) so no
// older header or key material survives there; the data area is left
// alone. The primary header is written last: a Format cut short leaves a
// device Open refuses rather than a half-written volume.
func Format(ctx context.Context, dev Device, key []byte, opts *FormatOptions) (*Volume, error) {
	var o FormatOptions
	if opts != nil {
		o = *opts
	}
	if len(key) == 0 {
		return nil, fmt.Errorf("%w: empty key", ErrInvalidArgument)
	}
	if o.Rand == nil {
		o.Rand = rand.Reader
	}
	if o.KDF == (KDF{}) {
		o.KDF = defaultKDF
	}
	if err := o.KDF.check(); err != nil {
		return nil, err
	}
	if o.SectorSize == 0 {
		o.SectorSize = DefaultSectorSize
	}
	if o.DataOffset == 0 {
		o.DataOffset = DefaultDataOffset
	}
	if o.DigestIterations == 0 {
		o.DigestIterations = DefaultDigestIterations
	}
	if o.KeySize == 0 {
		o.KeySize = DefaultKeySize
	}
	if o.VolumeKey != nil {
		o.KeySize = len(o.VolumeKey)
	}
	switch {
	case o.KeySize != 32 && o.KeySize != 64:
		return nil, fmt.Errorf("%w: aes-xts-plain64 volume key of %d bytes (want 32 or 64)", ErrInvalidArgument, o.KeySize)
	case o.SectorSize != 512 && o.SectorSize != 1024 && o.SectorSize != 2048 && o.SectorSize != 4096:
		return nil, fmt.Errorf("%w: sector size %d", ErrInvalidArgument, o.SectorSize)
	case o.DataOffset%areaAlign != 0 || o.DataOffset%int64(o.SectorSize) != 0:
		return nil, fmt.Errorf("%w: data offset %d is not a multiple of 4096 and the sector size", ErrInvalidArgument, o.DataOffset)
	case o.DataOffset < 2*metadataSize+int64(areaSizeFor(o.KeySize)):
		return nil, fmt.Errorf("%w: data offset %d leaves no room for a keyslot (need %d)",
			ErrInvalidArgument, o.DataOffset, 2*metadataSize+areaSizeFor(o.KeySize))
	case o.DataSize < 0 || o.DataSize%int64(o.SectorSize) != 0:
		return nil, fmt.Errorf("%w: data size %d is not a multiple of the sector size", ErrInvalidArgument, o.DataSize)
	case len(o.Tokens) > maxTokens:
		return nil, fmt.Errorf("%w: %d tokens (LUKS2 allows %d)", ErrInvalidArgument, len(o.Tokens), maxTokens)
	case len(o.Label) >= labelLen || len(o.Subsystem) >= subsystemLen:
		return nil, fmt.Errorf("%w: label and subsystem must be shorter than 48 bytes", ErrInvalidArgument)
	case o.DigestIterations < 1:
		return nil, fmt.Errorf("%w: digest iterations", ErrInvalidArgument)
	}
	for i, t := range o.Tokens { // before the KDF runs; stored below
		if _, err := encodeToken(t, func(n int) bool { return n == 0 }); err != nil {
			return nil, fmt.Errorf("token %d: %w", i, err)
		}
	}
	if o.UUID == "" {
		u, err := newUUID(o.Rand)
		if err != nil {
			return nil, fmt.Errorf("uuid: %w", err)
		}
		o.UUID = u
	} else if !uuidRE.MatchString(o.UUID) {
		return nil, fmt.Errorf("%w: UUID %q", ErrInvalidArgument, o.UUID)
	}
	devSize, known := deviceSize(dev)
	end := o.DataOffset + max(o.DataSize, int64(o.SectorSize))
	if known && devSize < end {
		return nil, fmt.Errorf("%w: device of %d bytes is smaller than %d (data offset + data)", ErrInvalidArgument, devSize, end)
	}

	vk := o.VolumeKey
	if vk == nil {
		vk = make([]byte, o.KeySize)
		if _, err := io.ReadFull(o.Rand, vk); err != nil {
			return nil, fmt.Errorf("volume key: %w", err)
		}
	} else {
		vk = append([]byte(nil), vk...)
	}

	keyslotsSize := min(uint64(o.DataOffset)-2*metadataSize, maxKeyslotsSize)
	slotOff := uint64(2 * metadataSize)
	ks, material, err := sealSlot(ctx, o.Rand, vk, key, o.KDF, slotOff)
	if err != nil {
		return nil, err
	}
	dg, err := makeDigest(ctx, o.Rand, vk, o.DigestIterations)
	if err != nil {
		return nil, err
	}
	dg.Keyslots = []string{"0"}
	seg := &segment{
		Type: "crypt", Offset: u64(o.DataOffset), IVTweak: 0,
		Encryption: "aes-xts-plain64", SectorSize: o.SectorSize,
		Size: segSize{dynamic: o.DataSize == 0, n: uint64(o.DataSize)},
	}
	h := &header{
		bin: &binaryHeader{
			hdrSize: metadataSize, seqID: 1, label: o.Label, csumAlg: "sha256",
			uuid: o.UUID, subsystem: o.Subsystem,
		},
		md: &metadata{
			Keyslots: map[string]*keyslot{"0": ks},
			Tokens:   map[string]json.RawMessage{},
			Segments: map[string]*segment{"0": seg},
			Digests:  map[string]*digest{"0": dg},
			Config:   config{JSONSize: metadataSize - binHeaderSize, KeyslotsSize: u64(keyslotsSize)},
		},
	}
	for i, t := range o.Tokens {
		if err := h.md.setToken(i, t); err != nil {
			return nil, fmt.Errorf("token %d: %w", i, err)
		}
	}
	if err := h.md.validate(metadataSize); err != nil {
		return nil, fmt.Errorf("format produced invalid metadata: %w", err)
	}
	if _, err := h.md.marshalJSONArea(metadataSize - binHeaderSize); err != nil {
		return nil, err // too many or too large tokens: fail before wiping
	}

	// Wipe metadata and keyslots areas, then key material, then headers.
	if err := zeroRange(ctx, dev, 0, int64(2*metadataSize+keyslotsSize)); err != nil {
		return nil, err
	}
	if _, err := dev.WriteAt(material, int64(slotOff)); err != nil {
		return nil, fmt.Errorf("write keyslot 0 at offset %d: %w", slotOff, err)
	}
	if err := h.write(ctx, dev, o.Rand); err != nil {
		return nil, err
	}
	v := h.volume(vk, 0)
	if err := v.resolveSize(sizeOrUnknown(devSize, known)); err != nil {
		return nil, err
	}
	return v, nil
}

func sizeOrUnknown(n int64, known bool) int64 {
	if !known {
		return -1
	}
	return n
}

// zeroRange overwrites [off, off+n) with zeros, 1 MiB at a time.
func zeroRange(ctx context.Context, dev io.WriterAt, off, n int64) error {
	buf := make([]byte, min(n, 1<<20))
	for n > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		c := min(n, int64(len(buf)))
		if _, err := dev.WriteAt(buf[:c], off); err != nil {
			return fmt.Errorf("wipe at offset %d: %w", off, err)
		}
		off += c
		n -= c
	}
	return nil
}

// volume builds the Volume for an unlocked header.
func (h *header) volume(vk []byte, slot int) *Volume {
	s := h.md.Segments["0"]
	return &Volume{
		UUID: h.bin.uuid, Label: h.bin.label, Cipher: s.Encryption, Key: vk,
		SectorSize: s.SectorSize, Offset: int64(s.Offset), Size: int64(s.Size.n),
		Dynamic: s.Size.dynamic, IVTweak: uint64(s.IVTweak), Keyslot: slot,
	}
}
