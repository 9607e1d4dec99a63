package verity

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"
)

// FuzzSuperblock feeds arbitrary bytes to the superblock parser: it must
// not panic, and whatever it accepts must survive a marshal round trip and
// yield parameters that newGeometry either accepts or rejects cleanly.
func FuzzSuperblock(f *testing.F) {
	good := Superblock{Version: 1, HashType: 1, Algorithm: "sha256", DataBlockSize: 4096, HashBlockSize: 4096, DataBlocks: 3, Salt: []byte{1, 2, 3}}
	b, _ := good.MarshalBinary()
	f.Add(b)
	f.Add(b[:100])
	f.Add(make([]byte, 512))
	f.Fuzz(func(t *testing.T, b []byte) {
		var sb Superblock
		if err := sb.UnmarshalBinary(b); err != nil {
			if !errors.Is(err, ErrBadSuperblock) {
				t.Fatalf("error %v is not ErrBadSuperblock", err)
			}
			return
		}
		again, err := sb.MarshalBinary()
		if err != nil {
			t.Fatalf("accepted superblock does not marshal: %v", err)
		}
		var sb2 Superblock
		if err := sb2.UnmarshalBinary(again); err != nil || sb2.Algorithm != sb.Algorithm || !bytes.Equal(sb2.Salt, sb.Salt) {
			t.Fatalf("round trip: %v", err)
		}
		newGeometry(sb.Params(0, nil))
	})
}

// FuzzVerify runs Verify and the Reader over random images and random
// parameters: no panic, no hang, and an error that is typed.
func FuzzVerify(f *testing.F) {
	data := randomData(9, 16*512)
	hash := &memDev{}
	p, err := Format(context.Background(), bytes.NewReader(data), int64(len(data)), hash, Options{DataBlockSize: 512, HashBlockSize: 512, Salt: []byte{7}})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data, hash.b, []byte(p.RootHash), uint8(0), uint8(0), uint8(0))
	f.Add(data[:1000], hash.b[:600], []byte(p.RootHash), uint8(1), uint8(1), uint8(2))
	f.Fuzz(func(t *testing.T, data, hashDev, root []byte, shape, offset, alg uint8) {
		// Keep the geometry small so one input runs fast, but let the
		// parameters disagree with the bytes in every way.
		algs := []string{"sha256", "sha1", "sha512", "sha384"}
		q := &Params{
			HashType:      1,
			Algorithm:     algs[int(alg)%len(algs)],
			DataBlockSize: 512 << (shape & 3),
			HashBlockSize: 512 << (shape >> 2 & 3),
			Superblock:    shape&0x10 != 0,
			HashOffset:    uint64(offset) * 512,
			Salt:          root[:len(root)/2],
			RootHash:      root,
		}
		q.DataBlocks = uint64(len(data))/uint64(q.DataBlockSize) + uint64(shape>>5)
		if q.DataBlocks == 0 {
			q.DataBlocks = 1
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		err := Verify(ctx, bytes.NewReader(data), &memDev{b: hashDev}, q)
		if err != nil && !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrTruncated) && !errors.Is(err, ErrInvalidParams) {
			t.Fatalf("untyped error: %v", err)
		}
		if r, err := NewReader(bytes.NewReader(data), &memDev{b: hashDev}, q); err == nil {
			buf := make([]byte, 700)
			r.ReadAt(buf, int64(offset)*3)
		}
		if _, err := OpenParams(&memDev{b: hashDev}, uint64(offset)*512, root, nil); err != nil &&
			!errors.Is(err, ErrBadSuperblock) && !errors.Is(err, ErrTruncated) && !errors.Is(err, ErrInvalidParams) && !errors.Is(err, ErrUnknownAlgorithm) {
			t.Fatalf("untyped error from OpenParams: %v", err)
		}
	})
}
