package crypt

import (
	"context"
	"fmt"
	"io"
	"slices"
)

// Open reads the LUKS2 header on dev, tries each keyslot with key and
// returns the unlocked volume. The data is on dev too: a fixed-size segment
// must fit in it, and a dynamic one gets its size from it (when dev's size
// can be learned: a Size method, Seek or Stat).
//
// Open never writes. When the primary header is damaged it uses the
// secondary, as cryptsetup does, but leaves repairing to the caller (AddKey
// or any other update rewrites both copies).
func Open(ctx context.Context, dev io.ReaderAt, key []byte) (*Volume, error) {
	size, known := deviceSize(dev)
	return open(ctx, dev, key, sizeOrUnknown(size, known), false, openConfig{})
}

// OpenDetached unlocks a volume whose header lives apart from its data
// (cryptsetup --header): header holds the LUKS2 metadata and keyslots,
// dataSize is the data device's size in bytes (-1 if unknown), used to size
// a dynamic segment.
func OpenDetached(ctx context.Context, header io.ReaderAt, dataSize int64, key []byte) (*Volume, error) {
	return open(ctx, header, key, dataSize, true, openConfig{})
}

// openConfig is what varies between the Open functions.
type openConfig struct {
	policy *Policy // checked before any KDF runs; nil: none
	kdf    kdfFunc // nil: kdfJSON.derive
}

func open(ctx context.Context, r io.ReaderAt, key []byte, dataSize int64, detached bool, cfg openConfig) (*Volume, error) {
	if len(key) == 0 {
		return nil, fmt.Errorf("%w: empty key", ErrInvalidArgument)
	}
	h, err := readHeader(ctx, r)
	if err != nil {
		return nil, err
	}
	h.kdf = cfg.kdf
	if cfg.policy != nil {
		if err := cfg.policy.Check(h.info()); err != nil {
			return nil, err
		}
	}
	return h.open(ctx, r, key, dataSize, detached)
}

// open unlocks the already read and checked header h; only the keyslot
// areas are read from r.
func (h *header) open(ctx context.Context, r io.ReaderAt, key []byte, dataSize int64, detached bool) (*Volume, error) {
	v := h.volume(nil, -1)
	if metaEnd := int64(2*h.bin.hdrSize) + int64(h.md.Config.KeyslotsSize); !detached && v.Offset < metaEnd {
		// Offset 0 is only for detached headers: on the same device the
		// data would overlap (and dm-crypt would overwrite) the header.
		return nil, &HeaderError{Offset: h.offset, Err: corruptf("data offset %d inside the metadata (end %d) of an attached header", v.Offset, metaEnd)}
	}
	if err := v.resolveSize(dataSize); err != nil {
		return nil, err
	}
	vk, slot, err := h.unlock(ctx, r, key)
	if err != nil {
		return nil, err
	}
	if len(vk) != 32 && len(vk) != 64 {
		clear(vk)
		return nil, unsupportedf("aes-xts-plain64 volume key of %d bytes", len(vk))
	}
	v.Key, v.Keyslot = vk, slot
	return v, nil
}

// Info is what a LUKS2 header says without unlocking it.
type Info struct {
	UUID, Label, Subsystem string
	SeqID                  uint64
	Cipher                 string
	SectorSize             int
	Offset                 int64 // data offset, bytes
	Size                   int64 // 0 when Dynamic
	Dynamic                bool
	Keyslots               []int // active keyslot numbers, ascending
	// HeaderOffset is where the header copy in use lives: 0, or the
	// secondary's offset when the primary is damaged.
	HeaderOffset int64
	// MetadataSize is the size of each header copy (binary header and
	// JSON area); KeyslotsSize that of the keyslots area after them.
	MetadataSize, KeyslotsSize int64
	// Slots describes each active keyslot, by number.
	Slots map[int]SlotInfo
	// Digests describes the volume key digests, by id.
	Digests map[int]DigestInfo
	// Tokens are the header's tokens by id (empty map when none).
	Tokens map[int]Token
}

// SlotInfo describes a keyslot without opening it.
type SlotInfo struct {
	KeySize     int    // volume key length, bytes
	AreaCipher  string // cipher of the key material: "aes-xts-plain64"
	AreaKeySize int    // its key length, bytes
	AFHash      string // anti-forensic splitter hash
	KDF         KDF    // type and cost (Hash set for PBKDF2)
	Priority    int    // 0 ignore, 1 normal (default), 2 high
}

// DigestInfo describes a volume key digest.
type DigestInfo struct {
	Type       string // "pbkdf2"
	Hash       string
	Iterations uint32
	Size       int   // digest length, bytes
	Keyslots   []int // keyslots it verifies
}

// ReadInfo validates the header on dev (as Open does) and describes it.
// Callers use it to tell a blank device (ErrNotLUKS) from a formatted one.
func ReadInfo(ctx context.Context, dev io.ReaderAt) (*Info, error) {
	h, err := readHeader(ctx, dev)
	if err != nil {
		return nil, err
	}
	return h.info(), nil
}

// info describes a validated header; every conversion below is in range
// because validate bounds the values.
func (h *header) info() *Info {
	s := h.md.Segments["0"]
	in := &Info{
		UUID: h.bin.uuid, Label: h.bin.label, Subsystem: h.bin.subsystem, SeqID: h.bin.seqID,
		Cipher: s.Encryption, SectorSize: s.SectorSize, Offset: int64(s.Offset),
		Size: int64(s.Size.n), Dynamic: s.Size.dynamic, HeaderOffset: h.offset,
		MetadataSize: int64(h.bin.hdrSize), KeyslotsSize: int64(h.md.Config.KeyslotsSize),
		Slots: make(map[int]SlotInfo, len(h.md.Keyslots)), Digests: make(map[int]DigestInfo, len(h.md.Digests)),
		Tokens: h.md.tokens(),
	}
	for id, k := range h.md.Keyslots {
		n, _ := validID(id)
		si := SlotInfo{
			KeySize: k.KeySize, AreaCipher: k.Area.Encryption, AreaKeySize: k.Area.KeySize,
			AFHash: k.AF.Hash, Priority: priorityNormal,
			KDF: KDF{Type: KDFType(k.KDF.Type), Time: uint32(k.KDF.Time), Memory: uint32(k.KDF.Memory),
				Threads: uint8(k.KDF.CPUs), Iterations: uint32(k.KDF.Iterations), Hash: k.KDF.Hash},
		}
		if k.Priority != nil {
			si.Priority = *k.Priority
		}
		in.Slots[n] = si
		in.Keyslots = append(in.Keyslots, n)
	}
	slices.Sort(in.Keyslots)
	for id, d := range h.md.Digests {
		n, _ := validID(id)
		di := DigestInfo{Type: d.Type, Hash: d.Hash, Iterations: uint32(d.Iterations), Size: len(d.Digest)}
		for _, ks := range d.Keyslots {
			k, _ := validID(ks)
			di.Keyslots = append(di.Keyslots, k)
		}
		in.Digests[n] = di
	}
	return in
}
