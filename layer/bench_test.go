package layer_test

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"testing"

	"github.com/enclave-storage/enclave-storage/layer"
)

// BenchmarkApply flattens one 32 MiB layer of 2,048 16 KiB files in 64
// directories: tar parsing, spooling and tree building, from memory.
func BenchmarkApply(b *testing.B) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	body := bytes.Repeat([]byte("0123456789abcdef"), 1024)
	for i := range 2048 {
		h := &tar.Header{Typeflag: tar.TypeReg, Name: fmt.Sprintf("d%02d/f%04d", i%64, i), Mode: 0o644, Size: int64(len(body)), ModTime: t0}
		if err := tw.WriteHeader(h); err != nil {
			b.Fatal(err)
		}
		tw.Write(body)
	}
	tw.Close()
	layerBytes := buf.Bytes()
	dir := b.TempDir()
	b.SetBytes(int64(len(layerBytes)))
	b.ResetTimer()
	for b.Loop() {
		fl, err := layer.New(layer.Options{SpoolDir: dir})
		if err != nil {
			b.Fatal(err)
		}
		if err := fl.Apply(context.Background(), bytes.NewReader(layerBytes), "bench"); err != nil {
			b.Fatal(err)
		}
		fl.Close()
	}
}
