package crypt

import (
	"cmp"
	"context"
	"crypto/aes"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"

	"golang.org/x/crypto/xts"
)

// Keyslot priorities (the "priority" field): ignore is never tried without
// naming the slot, high is tried before normal.
const (
	priorityIgnore = 0
	priorityNormal = 1
	priorityHigh   = 2
)

// materialSize is the on-disk length of AF-split key material: keyLen *
// stripes rounded up to whole 512-byte sectors.
func materialSize(keyLen int) int {
	return (keyLen*afStripes + 511) &^ 511
}

// areaSizeFor is the keyslot area cryptsetup allocates for a key: the
// material rounded up to 4 KiB.
func areaSizeFor(keyLen int) uint64 {
	return uint64((keyLen*afStripes + areaAlign - 1) &^ (areaAlign - 1))
}

// cryptArea en- or decrypts keyslot material in place with aes-xts-plain64,
// 512-byte sectors, IV starting at 0 at the start of the area.
func cryptArea(key, buf []byte, decrypt bool) error {
	c, err := xts.NewCipher(aes.NewCipher, key)
	if err != nil {
		return fmt.Errorf("keyslot cipher: %w", err)
	}
	for i := 0; i*512 < len(buf); i++ {
		s := buf[i*512 : (i+1)*512]
		if decrypt {
			c.Decrypt(s, s, uint64(i))
		} else {
			c.Encrypt(s, s, uint64(i))
		}
	}
	return nil
}

// verifyDigest checks vk against a pbkdf2 digest in constant time.
func verifyDigest(ctx context.Context, d *digest, vk []byte) (bool, error) {
	h, _ := hashByName(d.Hash)
	got, err := pbkdf2Key(ctx, h, vk, d.Salt, int(d.Iterations), len(d.Digest))
	if err != nil {
		return false, fmt.Errorf("digest: %w", err)
	}
	return subtle.ConstantTimeCompare(got, d.Digest) == 1, nil
}

// makeDigest builds a pbkdf2 digest of vk.
func makeDigest(ctx context.Context, rnd io.Reader, vk []byte, iterations uint32) (*digest, error) {
	salt := make([]byte, 32)
	if _, err := io.ReadFull(rnd, salt); err != nil {
		return nil, fmt.Errorf("digest salt: %w", err)
	}
	h, _ := hashByName("sha256")
	sum, err := pbkdf2Key(ctx, h, vk, salt, int(iterations), 32)
	if err != nil {
		return nil, fmt.Errorf("digest: %w", err)
	}
	return &digest{
		Type: "pbkdf2", Keyslots: []string{}, Segments: []string{"0"},
		Hash: "sha256", Iterations: int64(iterations), Salt: salt, Digest: sum,
	}, nil
}

// slotOrder lists keyslot ids in the order cryptsetup tries them: high
// priority first, then normal, by number; "ignore" slots are skipped.
func (md *metadata) slotOrder() []string {
	ids := make([]string, 0, len(md.Keyslots))
	for id, k := range md.Keyslots {
		if k.Priority != nil && *k.Priority == priorityIgnore {
			continue
		}
		ids = append(ids, id)
	}
	prio := func(id string) int {
		if p := md.Keyslots[id].Priority; p != nil {
			return *p
		}
		return priorityNormal
	}
	slices.SortFunc(ids, func(a, b string) int {
		if c := cmp.Compare(prio(b), prio(a)); c != 0 {
			return c
		}
		na, _ := strconv.Atoi(a)
		nb, _ := strconv.Atoi(b)
		return cmp.Compare(na, nb)
	})
	return ids
}

// openSlot derives the keyslot key from password, decrypts and merges the
// key material and checks it against the slot's digest. It returns
// ErrWrongKey when the digest does not match.
func (h *header) openSlot(ctx context.Context, r io.ReaderAt, id string, password []byte) ([]byte, error) {
	k := h.md.Keyslots[id]
	d := h.md.digestFor(id)
	var slotKey []byte
	var err error
	if h.kdf != nil {
		slotKey, err = h.kdf(ctx, &k.KDF, password, k.Area.KeySize)
	} else {
		slotKey, err = k.KDF.derive(ctx, password, k.Area.KeySize)
	}
	if err != nil {
		return nil, fmt.Errorf("keyslot %s: %w", id, err)
	}
	defer clear(slotKey)
	buf := make([]byte, materialSize(k.KeySize))
	defer clear(buf)
	if n, err := r.ReadAt(buf, int64(k.Area.Offset)); n < len(buf) {
		if err == nil || errors.Is(err, io.EOF) {
			err = ErrTruncated
		}
		return nil, fmt.Errorf("keyslot %s area at offset %d: %w", id, k.Area.Offset, err)
	}
	if err := cryptArea(slotKey, buf, true); err != nil {
		return nil, fmt.Errorf("keyslot %s: %w", id, err)
	}
	newHash, _ := hashByName(k.AF.Hash)
	vk := afMerge(newHash, buf, k.KeySize, afStripes)
	ok, err := verifyDigest(ctx, d, vk)
	if err != nil {
		clear(vk)
		return nil, fmt.Errorf("keyslot %s: %w", id, err)
	}
	if !ok {
		clear(vk)
		return nil, ErrWrongKey
	}
	return vk, nil
}

// unlock tries every usable keyslot and returns the volume key and the
// slot that opened.
func (h *header) unlock(ctx context.Context, r io.ReaderAt, password []byte) ([]byte, int, error) {
	for _, id := range h.md.slotOrder() {
		vk, err := h.openSlot(ctx, r, id, password)
		if errors.Is(err, ErrWrongKey) {
			continue
		}
		if err != nil {
			return nil, -1, err
		}
		n, _ := strconv.Atoi(id)
		return vk, n, nil
	}
	return nil, -1, ErrWrongKey
}

// sealSlot builds keyslot JSON for vk under password and returns it with
// the encrypted key material to write at off.
func sealSlot(ctx context.Context, rnd io.Reader, vk, password []byte, kdf KDF, off uint64) (*keyslot, []byte, error) {
	salt := make([]byte, 32)
	if _, err := io.ReadFull(rnd, salt); err != nil {
		return nil, nil, fmt.Errorf("keyslot salt: %w", err)
	}
	const areaKeySize = 64 // aes-xts-plain64, 512-bit, as cryptsetup
	k := &keyslot{
		Type:    "luks2",
		KeySize: len(vk),
		AF:      afJSON{Type: "luks1", Stripes: afStripes, Hash: "sha256"},
		Area: area{
			Type: "raw", Offset: u64(off), Size: u64(areaSizeFor(len(vk))),
			Encryption: "aes-xts-plain64", KeySize: areaKeySize,
		},
		KDF: kdf.toJSON(salt),
	}
	slotKey, err := k.KDF.derive(ctx, password, areaKeySize)
	if err != nil {
		return nil, nil, err
	}
	defer clear(slotKey)
	newHash, _ := hashByName("sha256")
	material, err := afSplit(rnd, newHash, vk, afStripes)
	if err != nil {
		return nil, nil, err
	}
	buf := make([]byte, materialSize(len(vk)))
	copy(buf, material)
	clear(material)
	if err := cryptArea(slotKey, buf, false); err != nil {
		return nil, nil, err
	}
	return k, buf, nil
}
