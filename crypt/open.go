package crypt

import (
	"context"
	"fmt"
	"io"
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
	return open(ctx, dev, key, sizeOrUnknown(size, known), false)
}

// OpenDetached unlocks a volume whose header lives apart from its data
// (cryptsetup --header): header holds the LUKS2 metadata and keyslots,
// dataSize is the data device's size in bytes (-1 if unknown), used to size
// a dynamic segment.
func OpenDetached(ctx context.Context, header io.ReaderAt, dataSize int64, key []byte) (*Volume, error) {
	return open(ctx, header, key, dataSize, true)
}

func open(ctx context.Context, r io.ReaderAt, key []byte, dataSize int64, detached bool) (*Volume, error) {
	if len(key) == 0 {
		return nil, fmt.Errorf("%w: empty key", ErrInvalidArgument)
	}
	h, err := readHeader(ctx, r)
	if err != nil {
		return nil, err
	}
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
	// Tokens are the header's tokens by id (empty map when none).
	Tokens map[int]Token
}

// ReadInfo validates the header on dev (as Open does) and describes it.
// Callers use it to tell a blank device (ErrNotLUKS) from a formatted one.
func ReadInfo(ctx context.Context, dev io.ReaderAt) (*Info, error) {
	h, err := readHeader(ctx, dev)
	if err != nil {
		return nil, err
	}
	s := h.md.Segments["0"]
	in := &Info{
		UUID: h.bin.uuid, Label: h.bin.label, Subsystem: h.bin.subsystem, SeqID: h.bin.seqID,
		Cipher: s.Encryption, SectorSize: s.SectorSize, Offset: int64(s.Offset),
		Size: int64(s.Size.n), Dynamic: s.Size.dynamic, HeaderOffset: h.offset,
		Tokens: h.md.tokens(),
	}
	for i := range maxKeyslots {
		if h.md.Keyslots[fmt.Sprint(i)] != nil {
			in.Keyslots = append(in.Keyslots, i)
		}
	}
	return in, nil
}
