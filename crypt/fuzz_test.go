package crypt

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"slices"
	"testing"
)

const fixtureHeader = "testdata/cryptsetup-2.6.1-two-keyslots.hdr"

// TestFixtureHeader reads a header cryptsetup 2.6.1 wrote (luksFormat with
// argon2id, then luksAddKey with pbkdf2; both copies, no key material).
func TestFixtureHeader(t *testing.T) {
	b := fileBytes(t, fixtureHeader)
	in, err := ReadInfo(bg, bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	want := Info{
		UUID: "6b1e9c57-3f0a-4d2b-9e41-5a7c0d8f2e63", Label: "fixture", SeqID: in.SeqID,
		Cipher: "aes-xts-plain64", SectorSize: 4096, Offset: 16 << 20, Dynamic: true,
	}
	if in.UUID != want.UUID || in.Label != want.Label || in.Cipher != want.Cipher ||
		in.SectorSize != want.SectorSize || in.Offset != want.Offset || !in.Dynamic ||
		len(in.Keyslots) != 2 || in.Keyslots[0] != 0 || in.Keyslots[1] != 1 || in.HeaderOffset != 0 {
		t.Fatalf("ReadInfo = %+v", in)
	}
	// Open fails cleanly: the fixture stops before the key material.
	if _, err := OpenDetached(bg, bytes.NewReader(b), 1<<30, []byte("fixture")); err == nil {
		t.Fatal("Open succeeded without key material")
	}
}

// jsonArea extracts the JSON text of the primary header copy.
func jsonArea(b []byte) []byte {
	js := b[binHeaderSize:metadataSize]
	return js[:bytes.IndexByte(js, 0)]
}

// sealedImage wraps js in a primary header copy with a valid checksum, so
// the fuzzer reaches the JSON validation instead of the checksum.
func sealedImage(js []byte) []byte {
	b := &binaryHeader{hdrSize: metadataSize, seqID: 1, csumAlg: "sha256", uuid: "x"}
	area := append(b.marshal(), make([]byte, metadataSize-binHeaderSize)...)
	copy(area[binHeaderSize:len(area)-1], js)
	sealArea(area)
	return area
}

// fuzzSeeds are whole header areas (both copies): cryptsetup's fixture and
// one written by Format (regenerate with go test -run TestWriteFormatFixture
// -args -update).
func fuzzSeeds(f *testing.F) [][]byte {
	var seeds [][]byte
	for _, p := range []string{fixtureHeader, formatFixture, argon2Fixture} {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		seeds = append(seeds, b)
	}
	return seeds
}

const formatFixture = "testdata/format-pbkdf2.hdr"

var update = flag.Bool("update", false, "rewrite the testdata header fixtures")

// TestFormatFixture checks the stored Format output still reads as this
// code expects (and rewrites it with -update).
func TestFormatFixture(t *testing.T) {
	if *update {
		dev := &memDevice{buf: make([]byte, 17<<20)}
		_, err := Format(bg, dev, []byte("fixture"), &FormatOptions{KDF: fastPBKDF2, Label: "fixture",
			UUID: "3d0f6a9e-8c21-4b7f-a5e2-19c4d7b0e8f1"})
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(formatFixture, dev.buf[:2*metadataSize], 0o644); err != nil {
			t.Fatal(err)
		}
	}
	in, err := ReadInfo(bg, bytes.NewReader(fileBytes(t, formatFixture)))
	if err != nil {
		t.Fatal(err)
	}
	if in.UUID != "3d0f6a9e-8c21-4b7f-a5e2-19c4d7b0e8f1" || in.Label != "fixture" || len(in.Keyslots) != 1 {
		t.Fatalf("ReadInfo = %+v", in)
	}
}

// FuzzBinaryHeader: the fixed-size header parser never panics.
func FuzzBinaryHeader(f *testing.F) {
	// Everything after the checksum (offset 512) is padding: seed and
	// mutate only the first 512 bytes, so minimizing stays cheap.
	for _, s := range fuzzSeeds(f) {
		f.Add(s[:512])
		f.Add(s[metadataSize : metadataSize+512])
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) < binHeaderSize {
			if _, err := parseBinaryHeader(b); err == nil {
				t.Fatal("accepted a short header")
			}
			b = append(b, make([]byte, binHeaderSize-len(b))...)
		}
		h, err := parseBinaryHeader(b)
		if err == nil && (h.hdrSize > 4<<20 || !validHdrSize(h.hdrSize)) {
			t.Fatalf("accepted metadata size %d", h.hdrSize)
		}
		if err == nil {
			again, err := parseBinaryHeader(h.marshal())
			if err != nil || again.hdrSize != h.hdrSize || again.seqID != h.seqID {
				t.Fatalf("marshal round trip: %v", err)
			}
		}
	})
}

// FuzzMetadata: hostile JSON inside a correctly checksummed header is
// refused or yields metadata whose offsets are all in range; never a panic
// or an allocation beyond the (4 MiB-bounded) JSON area.
func FuzzMetadata(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(jsonArea(s))
		f.Add(withTokens(f, jsonArea(s)))
	}
	f.Add([]byte(`{"keyslots":{},"tokens":{},"segments":{"0":{"type":"crypt","offset":"0","size":"dynamic","iv_tweak":"0","encryption":"aes-xts-plain64","sector_size":512}},"digests":{},"config":{"json_size":"12288","keyslots_size":"0"}}`))
	f.Fuzz(func(t *testing.T, js []byte) {
		if len(js) >= metadataSize-binHeaderSize {
			return
		}
		img := sealedImage(js)
		h, err := readHeader(bg, bytes.NewReader(img))
		if err != nil {
			return
		}
		ksEnd := 2*h.bin.hdrSize + uint64(h.md.Config.KeyslotsSize)
		for id, k := range h.md.Keyslots {
			if uint64(k.Area.Offset)+uint64(k.Area.Size) > ksEnd || k.KeySize > maxKeySize {
				t.Fatalf("keyslot %s out of range: %+v", id, k.Area)
			}
		}
		v := h.volume(nil, -1)
		if v.Offset < 0 || v.Size < 0 || v.Offset+v.Size < 0 {
			t.Fatalf("volume range overflows: %+v", v)
		}
		_ = v.resolveSize(1 << 40)
		h.freeArea(areaSizeFor(64))
		h.md.slotOrder()
		if err := EnclavePolicy().Check(h.info()); err != nil && !errors.Is(err, ErrPolicy) {
			t.Fatalf("Check: %v is not a policy error", err)
		}
		toks := h.md.tokens()
		if len(toks) != len(h.md.Tokens) || len(toks) > maxTokens {
			t.Fatalf("%d valid tokens decode to %d", len(h.md.Tokens), len(toks))
		}
		for id, tok := range toks {
			raw, err := tok.marshal()
			if err != nil {
				t.Fatalf("token %d does not re-encode: %v", id, err)
			}
			again, err := parseToken(raw)
			if err != nil || again.Type != tok.Type || !slices.Equal(again.Keyslots, tok.Keyslots) || len(again.Fields) != len(tok.Fields) {
				t.Fatalf("token %d round trip: %+v, %v; want %+v", id, again, err, tok)
			}
		}
		// What we accept, we can write back and read again.
		area, err := h.md.marshalJSONArea(metadataSize - binHeaderSize)
		if err != nil {
			return
		}
		var round metadata
		if err := json.Unmarshal(area[:bytes.IndexByte(area, 0)], &round); err != nil {
			t.Fatalf("re-encoded metadata does not decode: %v", err)
		}
		if err := round.validate(metadataSize); err != nil {
			t.Fatalf("re-encoded metadata invalid: %v", err)
		}
	})
}

// withTokens adds two tokens (one like systemd-cryptenroll's, one like
// ours) to the JSON text js, as a fuzz seed.
func withTokens(f *testing.F, js []byte) []byte {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(js, &m); err != nil {
		f.Fatal(err)
	}
	m["tokens"] = json.RawMessage(`{"0":{"type":"systemd-tpm2","keyslots":["0"],"tpm2-blob":"AAAA","tpm2-pcrs":[7]},` +
		`"31":{"type":"enclave-storage-kms","keyslots":[],"key_arn":"arn:aws:kms:x","context":{"uuid":"u"}}}`)
	out, err := json.Marshal(m)
	if err != nil {
		f.Fatal(err)
	}
	return out
}

// FuzzReadHeader: arbitrary device contents (checksums and all) never
// panic the reader, including the secondary-header scan.
func FuzzReadHeader(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		readHeader(bg, bytes.NewReader(b))
	})
}

// memDevice is an in-memory Device.
type memDevice struct{ buf []byte }

func (m *memDevice) ReadAt(p []byte, off int64) (int, error) {
	return bytes.NewReader(m.buf).ReadAt(p, off)
}

func (m *memDevice) WriteAt(p []byte, off int64) (int, error) {
	if end := off + int64(len(p)); end > int64(len(m.buf)) {
		m.buf = append(m.buf, make([]byte, end-int64(len(m.buf)))...)
	}
	return copy(m.buf[off:], p), nil
}

func (m *memDevice) Size() int64 { return int64(len(m.buf)) }
