package enclave

import (
	"context"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/enclave-storage/enclave-storage/crypt"
	"github.com/enclave-storage/enclave-storage/ext4"
	"github.com/enclave-storage/enclave-storage/nbdclient"
)

// sparse is a device of any size that reads as zero, as a never-written
// run image of that size does, with optional data at some offsets.
type sparse struct {
	size int64
	data map[int64]byte
}

func (s sparse) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off >= s.size {
		return 0, io.EOF
	}
	n := int(min(int64(len(p)), s.size-off))
	clear(p[:n])
	for o, b := range s.data {
		if o >= off && o < off+int64(n) {
			p[o-off] = b
		}
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// TestBoundsExtremes feeds the numbers a hostile parent controls (export
// size and block size, LUKS segment geometry) at their extremes to the
// steps that use them: each is refused with ErrBadGeometry or accepted,
// never a panic, and ClassifyRun reads a bounded amount whatever the size.
func TestBoundsExtremes(t *testing.T) {
	sizes := []uint64{0, 1, 511, 512, 4095, 4097, 32<<20 - 512, 32 << 20, 32<<20 + 512, 32<<20 + 100,
		1 << 40, nbdclient.MaxExportSize, nbdclient.MaxExportSize + 512, 1 << 63, 1<<63 + 4096, math.MaxUint64}
	for _, size := range sizes {
		for _, bmin := range []uint32{0, 1, 512, 4096, 8192, 64 << 10, math.MaxUint32} {
			exp := &nbdclient.Export{Name: "x", Size: size, BlockSize: nbdclient.BlockSize{Minimum: bmin}}
			err := CheckExport(exp)
			ok := size >= 512 && size <= nbdclient.MaxExportSize && bmin <= 4096 && size%max(512, uint64(bmin)) == 0
			if (err == nil) != ok {
				t.Errorf("CheckExport(size %d, min block %d) = %v, want ok=%v", size, bmin, err, ok)
			}
			if err != nil && !errors.Is(err, ErrBadGeometry) {
				t.Errorf("CheckExport(size %d): %v is not ErrBadGeometry", size, err)
			}
		}
		if size > nbdclient.MaxExportSize {
			continue // refused above; never converted to int64
		}
		dev := sparse{size: int64(size)}
		got, err := ClassifyRun(dev, int64(size))
		if err != nil || got != RunBlank {
			t.Errorf("ClassifyRun(zero device of %d bytes) = %v, %v; want blank", size, got, err)
		}
		if offs := SampleOffsets(int64(size)); len(offs) > 0 {
			last := offs[len(offs)-1]
			if len(offs) != Samples || last+SampleBlock > int64(size) || last < int64(size)-SampleBlock-511 {
				t.Errorf("SampleOffsets(%d): %d samples, last at %d", size, len(offs), last)
			}
			dev.data = map[int64]byte{last + SampleBlock - 1: 1}
			if got, err := ClassifyRun(dev, int64(size)); err != nil || got != RunTampered {
				t.Errorf("ClassifyRun(%d bytes, last byte of the last block set) = %v, %v; want tampered", size, got, err)
			}
		}
	}
	if _, err := ClassifyRun(sparse{}, -1); err == nil {
		t.Error("ClassifyRun accepted a negative size")
	}
	for _, tc := range []struct {
		size, offset, length int64
		sector               int
		want                 uint64 // 0: an error
	}{
		{64 << 20, 16 << 20, 0, 4096, 48 << 11},
		{64 << 20, 16 << 20, 32 << 20, 512, 32 << 11},
		{64<<20 + 512, 16 << 20, 0, 4096, 48 << 11},
		{64 << 20, 64 << 20, 0, 4096, 0},
		{64 << 20, 16 << 20, 64 << 20, 4096, 0},
		{64 << 20, 16 << 20, math.MaxInt64, 4096, 0},
		{64 << 20, math.MaxInt64, 0, 4096, 0},
		{64 << 20, -512, 0, 4096, 0},
		{64 << 20, 16 << 20, -1, 4096, 0},
		{64 << 20, 16<<20 + 1, 0, 4096, 0},
		{64 << 20, 16 << 20, 0, 0, 0},
		{64 << 20, 16 << 20, 0, 1 << 30, 0},
		{16<<20 + 2048, 16 << 20, 0, 4096, 0},
		{math.MaxInt64, 16 << 20, 0, 4096, uint64(math.MaxInt64-16<<20) / 4096 * 8},
	} {
		got, err := cryptSectors(tc.size, tc.offset, tc.length, tc.sector)
		if tc.want == 0 && !errors.Is(err, ErrBadGeometry) || tc.want != 0 && (err != nil || got != tc.want) {
			t.Errorf("cryptSectors(%d, %d, %d, %d) = %d, %v; want %d", tc.size, tc.offset, tc.length, tc.sector, got, err, tc.want)
		}
	}
}

// TestHeaderWipe formats a run volume in a sparse file as the enclave does
// (LUKS2, then the sample stamps), writes a little, then zeroes the first
// MiB and then the whole header area, as a parent wanting the enclave to
// reset the volume would: both are RunTampered, never RunBlank.
func TestHeaderWipe(t *testing.T) {
	const size = 256 << 20
	path := filepath.Join(t.TempDir(), "run.img")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	if got, err := ClassifyRun(f, size); err != nil || got != RunBlank {
		t.Fatalf("new sparse file: %v, %v", got, err)
	}
	vol, err := crypt.Format(context.Background(), f, []byte("key"), &crypt.FormatOptions{KDF: crypt.KDF{Type: crypt.PBKDF2, Iterations: 1000}})
	if err != nil {
		t.Fatal(err)
	}
	if err := StampRun(f, size, vol.Offset); err != nil {
		t.Fatal(err)
	}
	if got, err := ClassifyRun(f, size); err != nil || got != RunLUKS {
		t.Fatalf("formatted: %v, %v", got, err)
	}
	for _, wipe := range []int64{BlankSize, vol.Offset} {
		if _, err := f.WriteAt(make([]byte, wipe), 0); err != nil {
			t.Fatal(err)
		}
		if got, err := ClassifyRun(f, size); err != nil || got != RunTampered {
			t.Errorf("first %d bytes zeroed: %v, %v; want %v", wipe, got, err, RunTampered)
		}
	}
	// Without stamps, ciphertext anywhere at a sample shows too.
	blank := sparse{size: size, data: map[int64]byte{SampleOffsets(size)[40] + 100: 0x5a}}
	if got, err := ClassifyRun(blank, size); err != nil || got != RunTampered {
		t.Errorf("one sample with data: %v, %v", got, err)
	}
	// Data between samples is not seen: the sample is a sample.
	between := sparse{size: size, data: map[int64]byte{SampleOffsets(size)[40] + SampleBlock + 100: 0x5a}}
	if got, err := ClassifyRun(between, size); err != nil || got != RunBlank {
		t.Errorf("data between samples: %v, %v", got, err)
	}
}

func TestCheckRoom(t *testing.T) {
	min := int64(crypt.DefaultDataOffset + ext4.MinSize)
	for _, tt := range []struct {
		name string
		size int64
		opts *crypt.FormatOptions
		ok   bool
	}{
		{"exactly enough", min, nil, true},
		{"one sector short", min - 512, nil, false},
		{"header only", crypt.DefaultDataOffset + 4096, nil, false},
		{"zero", 0, nil, false},
		{"smaller data offset", 4<<20 + ext4.MinSize, &crypt.FormatOptions{DataOffset: 4 << 20}, true},
		{"smaller data offset, short", 4<<20 + ext4.MinSize - 4096, &crypt.FormatOptions{DataOffset: 4 << 20}, false},
		{"big", 1 << 40, nil, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := checkRoom(tt.size, tt.opts)
			if (err == nil) != tt.ok {
				t.Fatalf("checkRoom(%d) = %v, want ok=%v", tt.size, err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrBadGeometry) {
				t.Fatalf("checkRoom(%d) = %v, want ErrBadGeometry", tt.size, err)
			}
		})
	}
}
