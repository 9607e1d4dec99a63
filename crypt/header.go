package crypt

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
)

// header is a validated LUKS2 header: the copy Open trusts.
type header struct {
	bin    *binaryHeader
	md     *metadata
	offset int64 // where the trusted copy lives
	// kdf, when set, replaces kdfJSON.derive for unlocking: tests count
	// KDF runs through it.
	kdf kdfFunc
}

// kdfFunc runs a keyslot KDF.
type kdfFunc func(ctx context.Context, k *kdfJSON, password []byte, keyLen int) ([]byte, error)

// readCopy reads and validates the header copy at off.
func readCopy(r io.ReaderAt, off int64) (*header, error) {
	buf := make([]byte, binHeaderSize)
	n, err := r.ReadAt(buf, off)
	if n < len(magicPrimary) {
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, err
		}
		return nil, ErrNotLUKS
	}
	if n < binHeaderSize {
		if _, perr := parseBinaryHeader(append(buf[:n:n], make([]byte, binHeaderSize-n)...)); perr != nil {
			return nil, perr
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, err
		}
		return nil, fmt.Errorf("%w: binary header cut at %d bytes", ErrTruncated, n)
	}
	bin, err := parseBinaryHeader(buf)
	if err != nil {
		return nil, err
	}
	if bin.secondary != (off != 0) {
		return nil, ErrNotLUKS
	}
	if bin.hdrOffset != uint64(off) {
		return nil, corruptf("header says it lives at offset %d", bin.hdrOffset)
	}
	if off != 0 && bin.hdrSize != uint64(off) {
		return nil, corruptf("secondary header at %d declares metadata size %d", off, bin.hdrSize)
	}
	areaBuf := make([]byte, bin.hdrSize) // ≤ 4 MiB: validHdrSize bounds it
	copy(areaBuf, buf)
	n, err = r.ReadAt(areaBuf[binHeaderSize:], off+binHeaderSize)
	if n < len(areaBuf)-binHeaderSize {
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, err
		}
		return nil, fmt.Errorf("%w: JSON area cut at %d of %d bytes", ErrTruncated, n, len(areaBuf)-binHeaderSize)
	}
	if err := verifyChecksum(bin, areaBuf); err != nil {
		return nil, err
	}
	md, err := parseMetadata(areaBuf[binHeaderSize:], bin.hdrSize)
	if err != nil {
		return nil, err
	}
	return &header{bin: bin, md: md, offset: off}, nil
}

// readHeader finds the header cryptsetup would use: the valid copy with the
// higher sequence id, the primary on a tie. A damaged primary is recovered
// from the secondary, found by scanning the offsets LUKS2 allows; nothing is
// written back.
func readHeader(ctx context.Context, r io.ReaderAt) (*header, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	p, pErr := readCopy(r, 0)
	var vErr *versionError
	if errors.As(pErr, &vErr) {
		return nil, &HeaderError{Offset: 0, Err: pErr}
	}
	var s *header
	var sErr error = ErrNotLUKS
	sOff := int64(0)
	if pErr == nil {
		sOff = int64(p.bin.hdrSize)
		s, sErr = readCopy(r, sOff)
	} else {
		for _, o := range secondaryOffsets {
			c, err := readCopy(r, o)
			if err == nil {
				s, sErr, sOff = c, nil, o
				break
			}
			if !errors.Is(err, ErrNotLUKS) && errors.Is(sErr, ErrNotLUKS) {
				sErr, sOff = err, o // remember the first copy that had a signature
			}
		}
	}
	switch {
	case pErr == nil && sErr == nil:
		if s.bin.seqID > p.bin.seqID {
			return s, nil
		}
		return p, nil
	case pErr == nil:
		return p, nil
	case sErr == nil:
		return s, nil
	}
	if errors.Is(pErr, ErrNotLUKS) && errors.Is(sErr, ErrNotLUKS) {
		return nil, ErrNotLUKS
	}
	if !errors.Is(pErr, ErrNotLUKS) {
		return nil, &HeaderError{Offset: 0, Err: pErr}
	}
	return nil, &HeaderError{Offset: sOff, Err: sErr}
}

// write stores h's metadata in both copies with sequence id seqID:
// secondary first, so that until the primary is rewritten the device keeps
// a consistent, valid primary (or, on Format, no primary at all).
func (h *header) write(ctx context.Context, dev Device, rnd io.Reader) error {
	hdrSize := h.bin.hdrSize
	jsonArea, err := h.md.marshalJSONArea(int(hdrSize - binHeaderSize))
	if err != nil {
		return err
	}
	for _, off := range []int64{int64(hdrSize), 0} {
		if err := ctx.Err(); err != nil {
			return err
		}
		b := *h.bin
		b.secondary = off != 0
		b.hdrOffset = uint64(off)
		b.csumAlg = "sha256" // sealArea always uses sha256
		if rnd == nil {
			rnd = rand.Reader
		}
		if _, err := io.ReadFull(rnd, b.salt[:]); err != nil {
			return fmt.Errorf("header salt: %w", err)
		}
		area := append(b.marshal(), jsonArea...)
		sealArea(area)
		if _, err := dev.WriteAt(area, off); err != nil {
			return fmt.Errorf("write LUKS2 header at offset %d: %w", off, err)
		}
	}
	return syncDevice(dev)
}
