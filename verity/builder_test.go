package verity

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// feed hands data to b in chunks of up to chunk blocks, in a shuffled
// order, from two goroutines.
func feed(t *testing.T, b *Builder, data []byte, bs, chunk int, seed uint64) {
	t.Helper()
	var offs []int
	for off := 0; off < len(data); off += chunk * bs {
		offs = append(offs, off)
	}
	rand.New(rand.NewPCG(seed, 1)).Shuffle(len(offs), func(i, j int) { offs[i], offs[j] = offs[j], offs[i] })
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for w := range 2 {
		wg.Go(func() {
			for i := w; i < len(offs); i += 2 {
				end := min(offs[i]+chunk*bs, len(data))
				if _, err := b.WriteAt(data[offs[i]:end], int64(offs[i])); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// TestBuilderMatchesFormat: the tree a Builder writes from blocks given
// out of order, concurrently, is Format's, byte for byte, for every
// algorithm, block size and tree shape of the oracle cases (Format's
// trees are checked against veritysetup in oracle_test.go; one is checked
// here directly).
func TestBuilderMatchesFormat(t *testing.T) {
	for i, tc := range oracleCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			data := randomData(uint64(i), int(tc.blocks)*int(tc.dbs))
			opts := Options{Algorithm: tc.alg, DataBlockSize: tc.dbs, HashBlockSize: tc.hbs,
				Salt: []byte{1, 2, 3}, UUID: "12345678-1234-4234-8234-123456789abc", HashOffset: uint64(len(data))}
			want := &memDev{b: bytes.Clone(data)}
			wp, err := Format(context.Background(), want, int64(len(data)), want, opts)
			if err != nil {
				t.Fatal(err)
			}
			got := &memDev{b: bytes.Clone(data)}
			b, err := NewBuilder(int64(len(data)), got, Options{Algorithm: tc.alg, DataBlockSize: tc.dbs, HashBlockSize: tc.hbs,
				Salt: []byte{1, 2, 3}, HashOffset: uint64(len(data))})
			if err != nil {
				t.Fatal(err)
			}
			feed(t, b, data, int(tc.dbs), 1+i%37, uint64(i))
			gp, err := b.Finish(context.Background(), opts.UUID)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(gp.RootHash, wp.RootHash) || gp.UUID != wp.UUID || gp.HashBlocks != wp.HashBlocks || gp.HashDeviceSize != wp.HashDeviceSize {
				t.Fatalf("builder params %+v, Format's %+v", gp, wp)
			}
			if !bytes.Equal(got.b, want.b) {
				t.Fatalf("builder's image differs from Format's (%d vs %d bytes)", len(got.b), len(want.b))
			}
		})
	}
}

// TestBuilderOracle: veritysetup verify accepts a Builder's tree appended
// to its data.
func TestBuilderOracle(t *testing.T) {
	vs := veritysetup(t)
	data := randomData(7, 3*128*4096+5*4096)
	path := filepath.Join(t.TempDir(), "img")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, err := NewBuilder(int64(len(data)), f, Options{HashOffset: uint64(len(data))})
	if err != nil {
		t.Fatal(err)
	}
	feed(t, b, data, 4096, 16, 7)
	p, err := b.Finish(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	root := hex.EncodeToString(p.RootHash)
	if out, err := runVS(t, vs, "verify", path, path, root, "--hash-offset", "1593344"); err != nil {
		t.Fatalf("veritysetup verify rejects the builder's tree: %v\n%s", err, out)
	}
}

func TestBuilderErrors(t *testing.T) {
	const bs = 4096
	data := randomData(3, 200*bs)
	tests := []struct {
		name string
		do   func(b *Builder) error
		want error
	}{
		{"misaligned offset", func(b *Builder) error { _, err := b.WriteAt(data[:bs], 512); return err }, ErrInvalidParams},
		{"partial block", func(b *Builder) error { _, err := b.WriteAt(data[:bs+1], 0); return err }, ErrInvalidParams},
		{"past the end", func(b *Builder) error { _, err := b.WriteAt(data[:2*bs], 199*bs); return err }, ErrInvalidParams},
		{"block twice", func(b *Builder) error {
			if _, err := b.WriteAt(data[:bs], 0); err != nil {
				return err
			}
			_, err := b.WriteAt(data[:bs], 0)
			return err
		}, ErrInvalidParams},
		{"block missing", func(b *Builder) error {
			if _, err := b.WriteAt(data[:100*bs], 0); err != nil {
				return err
			}
			if _, err := b.WriteAt(data[101*bs:], 101*bs); err != nil {
				return err
			}
			_, err := b.Finish(context.Background(), "")
			return err
		}, ErrTruncated},
		{"bad uuid", func(b *Builder) error {
			if _, err := b.WriteAt(data, 0); err != nil {
				return err
			}
			_, err := b.Finish(context.Background(), "not-a-uuid")
			return err
		}, ErrInvalidParams},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, err := NewBuilder(int64(len(data)), &memDev{}, Options{HashOffset: uint64(len(data))})
			if err != nil {
				t.Fatal(err)
			}
			if err := tc.do(b); !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}
