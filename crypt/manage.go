package crypt

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"slices"
	"strconv"
)

// AddKey adds a keyslot opened by newKey to the volume on dev, proving
// access with an existing key, and returns the new slot's number. kdf nil
// means DefaultKDF(). Both header copies are rewritten with a higher
// sequence id (which also repairs a damaged primary).
func AddKey(ctx context.Context, dev Device, key, newKey []byte, kdf *KDF) (int, error) {
	if len(newKey) == 0 {
		return -1, fmt.Errorf("%w: empty new key", ErrInvalidArgument)
	}
	k := defaultKDF
	if kdf != nil && *kdf != (KDF{}) {
		k = *kdf
	}
	if err := k.check(); err != nil {
		return -1, err
	}
	h, err := readHeader(ctx, dev)
	if err != nil {
		return -1, err
	}
	vk, _, err := h.unlock(ctx, dev, key)
	if err != nil {
		return -1, err
	}
	defer clear(vk)

	slot := -1
	for i := range maxKeyslots {
		if h.md.Keyslots[strconv.Itoa(i)] == nil {
			slot = i
			break
		}
	}
	if slot < 0 {
		return -1, fmt.Errorf("all %d keyslots in use: %w", maxKeyslots, ErrNoFreeSlot)
	}
	off, ok := h.freeArea(areaSizeFor(len(vk)))
	if !ok {
		return -1, fmt.Errorf("keyslots area full: %w", ErrNoFreeSlot)
	}
	id := strconv.Itoa(slot)
	ks, material, err := sealSlot(ctx, rand.Reader, vk, newKey, k, off)
	if err != nil {
		return -1, err
	}
	// Bind the slot to the digest of the segment the key opens.
	d := h.md.digestFor(firstSlot(h.md))
	if d == nil {
		return -1, corruptf("no digest for segment 0")
	}
	if _, err := dev.WriteAt(material, int64(off)); err != nil {
		return -1, fmt.Errorf("write keyslot %d at offset %d: %w", slot, off, err)
	}
	h.md.Keyslots[id] = ks
	d.Keyslots = append(d.Keyslots, id)
	h.bin.seqID++
	if err := h.write(ctx, dev, rand.Reader); err != nil {
		return -1, err
	}
	return slot, nil
}

// firstSlot returns some keyslot id that has a digest for segment 0.
func firstSlot(md *metadata) string {
	for _, id := range md.slotOrder() {
		if md.digestFor(id) != nil {
			return id
		}
	}
	for id := range md.Keyslots {
		return id
	}
	return ""
}

// freeArea finds the lowest 4 KiB-aligned gap of size n in the keyslots
// area.
func (h *header) freeArea(n uint64) (uint64, bool) {
	start := 2 * h.bin.hdrSize
	end := start + uint64(h.md.Config.KeyslotsSize)
	type iv struct{ lo, hi uint64 }
	var used []iv
	for _, k := range h.md.Keyslots {
		used = append(used, iv{uint64(k.Area.Offset), uint64(k.Area.Offset + k.Area.Size)})
	}
	slices.SortFunc(used, func(a, b iv) int { return int(int64(a.lo) - int64(b.lo)) })
	off := start
	for _, u := range used {
		if off+n <= u.lo {
			break
		}
		off = max(off, (u.hi+areaAlign-1)&^(areaAlign-1))
	}
	return off, off+n <= end
}

// RemoveKey destroys the keyslot key opens, leaving the others. It refuses
// to remove the last keyslot (use Wipe to make the volume unrecoverable).
func RemoveKey(ctx context.Context, dev Device, key []byte) (int, error) {
	h, err := readHeader(ctx, dev)
	if err != nil {
		return -1, err
	}
	vk, slot, err := h.unlock(ctx, dev, key)
	if err != nil {
		return -1, err
	}
	clear(vk)
	if len(h.md.Keyslots) == 1 {
		return -1, fmt.Errorf("%w: keyslot %d is the last one; Wipe destroys the volume", ErrInvalidArgument, slot)
	}
	return slot, h.kill(ctx, dev, []string{strconv.Itoa(slot)})
}

// KillSlot destroys keyslot slot without needing any key (like cryptsetup
// luksKillSlot with --batch-mode).
func KillSlot(ctx context.Context, dev Device, slot int) error {
	h, err := readHeader(ctx, dev)
	if err != nil {
		return err
	}
	id := strconv.Itoa(slot)
	if h.md.Keyslots[id] == nil {
		return fmt.Errorf("%w: keyslot %d is not active", ErrInvalidArgument, slot)
	}
	return h.kill(ctx, dev, []string{id})
}

// Wipe destroys every keyslot: key material is overwritten with random
// data, then both header copies are rewritten without keyslots, so no key
// can recover the volume key and the data is unrecoverable. The header
// stays a valid LUKS2 header with no keyslots (like cryptsetup luksErase),
// so tools still recognise the device.
func Wipe(ctx context.Context, dev Device) error {
	h, err := readHeader(ctx, dev)
	if err != nil {
		return err
	}
	var ids []string
	for id := range h.md.Keyslots {
		ids = append(ids, id)
	}
	if err := h.kill(ctx, dev, ids); err != nil {
		return err
	}
	// Also scrub the whole keyslots area: material of slots killed
	// earlier by other tools may linger there.
	return overwriteRandom(ctx, dev, int64(2*h.bin.hdrSize), int64(h.md.Config.KeyslotsSize))
}

// kill overwrites the key material of the named slots with random data,
// then removes them from the metadata and writes both header copies.
func (h *header) kill(ctx context.Context, dev Device, ids []string) error {
	for _, id := range ids {
		k := h.md.Keyslots[id]
		if err := overwriteRandom(ctx, dev, int64(k.Area.Offset), int64(k.Area.Size)); err != nil {
			return fmt.Errorf("keyslot %s: %w", id, err)
		}
		delete(h.md.Keyslots, id)
		h.md.unassignTokens(id)
		for _, d := range h.md.Digests {
			d.Keyslots = slices.DeleteFunc(d.Keyslots, func(s string) bool { return s == id })
		}
	}
	if err := syncDevice(dev); err != nil {
		return err
	}
	h.bin.seqID++
	return h.write(ctx, dev, rand.Reader)
}

func overwriteRandom(ctx context.Context, dev io.WriterAt, off, n int64) error {
	buf := make([]byte, min(n, 1<<20))
	for n > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		c := min(n, int64(len(buf)))
		rand.Read(buf[:c])
		if _, err := dev.WriteAt(buf[:c], off); err != nil {
			return fmt.Errorf("overwrite at offset %d: %w", off, err)
		}
		off += c
		n -= c
	}
	return syncDevice(dev)
}
