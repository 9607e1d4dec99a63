package verity

import (
	"bytes"
	"context"
	"testing"
)

// BenchmarkFormat measures in-memory tree building (no I/O), so the
// number is the hashing pipeline alone; scripts/bench-verity.sh compares
// whole-file formatting with veritysetup.
func BenchmarkFormat(b *testing.B) {
	data := randomData(1, 64<<20)
	b.SetBytes(int64(len(data)))
	hash := &memDev{}
	for b.Loop() {
		if _, err := Format(context.Background(), bytes.NewReader(data), int64(len(data)), hash, Options{Salt: []byte{1}}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerify(b *testing.B) {
	data := randomData(1, 64<<20)
	hash := &memDev{}
	p, err := Format(context.Background(), bytes.NewReader(data), int64(len(data)), hash, Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if err := Verify(context.Background(), bytes.NewReader(data), hash, p); err != nil {
			b.Fatal(err)
		}
	}
}
