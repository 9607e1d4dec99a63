package verity

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// memDev is an in-memory device: io.ReaderAt and io.WriterAt, safe for
// concurrent use as an *os.File is (Format writes from several workers).
type memDev struct {
	mu sync.Mutex
	b  []byte
}

func (m *memDev) ReadAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if off >= int64(len(m.b)) {
		return 0, io.EOF
	}
	n := copy(p, m.b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (m *memDev) WriteAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if end := int(off) + len(p); end > len(m.b) {
		m.b = append(m.b, make([]byte, end-len(m.b))...)
	}
	return copy(m.b[off:], p), nil
}

func randomData(seed uint64, n int) []byte {
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), byte(seed >> 16)})
	r.Read(b)
	return b
}

// TestFixture checks the tree veritysetup wrote for testdata/three-blocks
// without needing veritysetup: same root hash, same bytes, accepted by
// Verify and NewReader.
func TestFixture(t *testing.T) {
	data, err := os.ReadFile("testdata/three-blocks.img")
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile("testdata/three-blocks.hash")
	if err != nil {
		t.Fatal(err)
	}
	var meta struct {
		RootHash HexBytes `json:"root_hash"`
		Salt     HexBytes `json:"salt"`
		UUID     string   `json:"uuid"`
	}
	js, _ := os.ReadFile("testdata/three-blocks.json")
	if err := json.Unmarshal(js, &meta); err != nil {
		t.Fatal(err)
	}
	hash := &memDev{}
	p, err := Format(context.Background(), bytes.NewReader(data), int64(len(data)), hash, Options{Salt: meta.Salt, UUID: meta.UUID})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(p.RootHash, meta.RootHash) {
		t.Errorf("root hash %x, veritysetup printed %x", p.RootHash, meta.RootHash)
	}
	if !bytes.Equal(hash.b, want) {
		t.Errorf("hash device differs from veritysetup's (%d vs %d bytes)", len(hash.b), len(want))
	}
	if p.HashBlocks != 1 || p.HashDeviceSize != 8192 || p.DataBlocks != 3 {
		t.Errorf("params %+v, want 1 hash block, 8192-byte hash device, 3 data blocks", p)
	}
	got, err := OpenParams(bytes.NewReader(want), 0, meta.RootHash, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got.UUID != meta.UUID || !bytes.Equal(got.Salt, meta.Salt) {
		t.Errorf("superblock gives %+v", got)
	}
	if err := Verify(context.Background(), bytes.NewReader(data), bytes.NewReader(want), got); err != nil {
		t.Fatal(err)
	}
}

func TestRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		opts Options
		size int
	}{
		{"one block", Options{}, 4096},
		{"two blocks", Options{}, 8192},
		{"one full hash block", Options{}, 128 * 4096},
		{"one more than a hash block", Options{}, 129 * 4096},
		{"three levels partial", Options{DataBlockSize: 512, HashBlockSize: 512}, (16*16 + 16 + 1) * 512},
		{"sha1 slots padded", Options{Algorithm: "sha1", DataBlockSize: 1024, HashBlockSize: 1024}, 300 * 1024},
		{"sha512", Options{Algorithm: "sha512"}, 200 * 4096},
		{"sha384", Options{Algorithm: "sha384"}, 200 * 4096},
		{"no salt", Options{Salt: []byte{}}, 10 * 4096},
		{"no superblock", Options{NoSuperblock: true}, 10 * 4096},
		{"hash offset", Options{HashOffset: 1 << 20}, 10 * 4096},
		{"hash offset not block aligned", Options{HashOffset: 512 * 3}, 10 * 4096},
		{"one worker", Options{Workers: 1}, 1000 * 4096},
		{"many batches", Options{DataBlockSize: 512}, 20000 * 512},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			data := randomData(uint64(i), tt.size)
			hash := &memDev{}
			p, err := Format(ctx, bytes.NewReader(data), int64(len(data)), hash, tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			if err := Verify(ctx, bytes.NewReader(data), hash, p); err != nil {
				t.Fatalf("Verify: %v", err)
			}
			// Same salt and UUID: same tree, whatever the worker count.
			opts := tt.opts
			opts.Salt, opts.UUID, opts.Workers = p.Salt, p.UUID, 3
			hash2 := &memDev{}
			p2, err := Format(ctx, bytes.NewReader(data), int64(len(data)), hash2, opts)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(p2.RootHash, p.RootHash) || !bytes.Equal(hash.b, hash2.b) {
				t.Fatal("same input, different tree")
			}
			if uint64(len(hash.b)) != p.HashDeviceSize {
				t.Errorf("hash device has %d bytes, params say %d", len(hash.b), p.HashDeviceSize)
			}
			r, err := NewReader(bytes.NewReader(data), hash, p)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(io.NewSectionReader(r, 0, r.Size()))
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("Reader returned %d bytes, err %v", len(got), err)
			}
			// Every data block and every tree block, flipped in turn at a
			// few positions, must be caught and named.
			for _, blk := range []uint64{0, p.DataBlocks / 2, p.DataBlocks - 1} {
				off := blk*uint64(p.DataBlockSize) + 17
				data[off] ^= 0x40
				err := Verify(ctx, bytes.NewReader(data), hash, p)
				var ce *CorruptionError
				if !errors.As(err, &ce) || ce.Area != DataArea || ce.Block != blk {
					t.Errorf("data block %d flipped: Verify says %v", blk, err)
				}
				if _, err := r.ReadAt(make([]byte, 1), int64(off)); !errors.Is(err, ErrCorrupt) {
					t.Errorf("data block %d flipped: Reader says %v", blk, err)
				}
				data[off] ^= 0x40
			}
			for blk := p.HashStartBlock(); blk < p.HashStartBlock()+p.HashBlocks; blk++ {
				off := blk*uint64(p.HashBlockSize) + 5
				hash.b[off] ^= 1
				err := Verify(ctx, bytes.NewReader(data), hash, p)
				var ce *CorruptionError
				if !errors.As(err, &ce) || ce.Area != HashArea || ce.Block != blk {
					t.Errorf("hash block %d flipped: Verify says %v", blk, err)
				}
				fresh, _ := NewReader(bytes.NewReader(data), hash, p)
				if _, err := io.ReadAll(io.NewSectionReader(fresh, 0, fresh.Size())); !errors.Is(err, ErrCorrupt) {
					t.Errorf("hash block %d flipped: Reader says %v", blk, err)
				}
				hash.b[off] ^= 1
			}
		})
	}
}

func TestWrongRootHash(t *testing.T) {
	data := randomData(1, 64*4096)
	hash := &memDev{}
	p, err := Format(context.Background(), bytes.NewReader(data), int64(len(data)), hash, Options{})
	if err != nil {
		t.Fatal(err)
	}
	bad := *p
	bad.RootHash = bytes.Clone(p.RootHash)
	bad.RootHash[0] ^= 1
	err = Verify(context.Background(), bytes.NewReader(data), hash, &bad)
	var ce *CorruptionError
	if !errors.As(err, &ce) || ce.Area != HashArea || ce.Level != 0 || ce.Block != p.HashStartBlock() {
		t.Fatalf("wrong root hash: %v", err)
	}
}

func TestBadInput(t *testing.T) {
	ctx := context.Background()
	data := randomData(2, 8*4096)
	tests := []struct {
		name string
		size int64
		opts Options
		want error
	}{
		{"size not a block multiple", 8*4096 - 1, Options{}, ErrInvalidParams},
		{"empty", 0, Options{}, ErrInvalidParams},
		{"unknown algorithm", 8 * 4096, Options{Algorithm: "md5"}, ErrUnknownAlgorithm},
		{"block size not a power of two", 8 * 4096, Options{DataBlockSize: 3000}, ErrInvalidParams},
		{"hash block too small", 8 * 4096, Options{HashBlockSize: 256}, ErrInvalidParams},
		{"more blocks than data", 8 * 4096, Options{DataBlocks: 9}, ErrTruncated},
		{"hash offset not 512 aligned", 8 * 4096, Options{HashOffset: 100}, ErrInvalidParams},
		{"no superblock, offset not block aligned", 8 * 4096, Options{NoSuperblock: true, HashOffset: 512}, ErrInvalidParams},
		{"salt too long", 8 * 4096, Options{Salt: make([]byte, 257)}, ErrInvalidParams},
		{"bad uuid", 8 * 4096, Options{UUID: "nope"}, ErrInvalidParams},
		{"data shorter than size", 9 * 4096, Options{}, ErrTruncated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Format(ctx, bytes.NewReader(data), tt.size, &memDev{}, tt.opts)
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
}

func TestVerifyTruncatedHash(t *testing.T) {
	data := randomData(3, 300*4096)
	hash := &memDev{}
	p, err := Format(context.Background(), bytes.NewReader(data), int64(len(data)), hash, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{len(hash.b) - 1, len(hash.b) - 4096, 4096 + 100, 100} {
		short := &memDev{b: hash.b[:n]}
		if err := Verify(context.Background(), bytes.NewReader(data), short, p); !errors.Is(err, ErrTruncated) {
			t.Errorf("hash area cut to %d bytes: %v", n, err)
		}
	}
	if _, err := OpenParams(&memDev{b: hash.b[:100]}, 0, p.RootHash, nil); !errors.Is(err, ErrTruncated) {
		t.Errorf("superblock cut short: %v", err)
	}
}

func TestSuperblockErrors(t *testing.T) {
	good := Superblock{Version: 1, HashType: 1, Algorithm: "sha256", DataBlockSize: 4096, HashBlockSize: 4096, DataBlocks: 10, Salt: []byte{1, 2}}
	b, err := good.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	corrupt := func(b []byte, f func(b []byte)) []byte { c := bytes.Clone(b); f(c); return c }
	tests := []struct {
		name string
		b    []byte
	}{
		{"short", b[:100]},
		{"signature", corrupt(b, func(b []byte) { b[0] = 'V' })},
		{"version", corrupt(b, func(b []byte) { b[sbVersion] = 2 })},
		{"hash type 0", corrupt(b, func(b []byte) { b[sbHashType] = 0 })},
		{"algorithm unterminated", corrupt(b, func(b []byte) { copy(b[sbAlgorithm:], bytes.Repeat([]byte{'a'}, 32)) })},
		{"salt size", corrupt(b, func(b []byte) { b[sbSaltSize+1] = 2 })},
		{"block size", corrupt(b, func(b []byte) { b[sbDBS] = 1 })},
		{"zero blocks", corrupt(b, func(b []byte) { clear(b[sbBlocks : sbBlocks+8]) })},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var sb Superblock
			if err := sb.UnmarshalBinary(tt.b); !errors.Is(err, ErrBadSuperblock) {
				t.Fatalf("got %v, want ErrBadSuperblock", err)
			}
		})
	}
	var sb Superblock
	if err := sb.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	if sb.Algorithm != good.Algorithm || !bytes.Equal(sb.Salt, good.Salt) || sb.DataBlocks != 10 {
		t.Fatalf("round trip gave %+v", sb)
	}
}

func TestFormatFileAppended(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "rootfs.img")
	data := randomData(4, 257*4096)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := FormatFile(ctx, path, path, Options{HashOffset: 4096}); !errors.Is(err, ErrInvalidParams) {
		t.Fatalf("overlapping hash offset: %v", err)
	}
	p, err := FormatFile(ctx, path, path, Options{HashOffset: uint64(len(data))})
	if err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(path)
	if uint64(st.Size()) != p.HashDeviceSize {
		t.Errorf("file is %d bytes, hash device size %d", st.Size(), p.HashDeviceSize)
	}
	if p.DataBlocks != 257 {
		t.Errorf("data blocks %d", p.DataBlocks)
	}
	if _, err := VerifyFile(ctx, path, path, p.HashOffset, p.RootHash, nil); err != nil {
		t.Fatal(err)
	}
	js, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	var back Params
	if err := json.Unmarshal(js, &back); err != nil || !bytes.Equal(back.RootHash, p.RootHash) || !bytes.Equal(back.Salt, p.Salt) {
		t.Fatalf("JSON round trip: %s, %v", js, err)
	}
}

func TestTable(t *testing.T) {
	p := &Params{HashType: 1, Algorithm: "sha256", DataBlockSize: 4096, HashBlockSize: 4096, DataBlocks: 256,
		HashOffset: 1 << 20, Superblock: true, Salt: []byte{0xab}, RootHash: bytes.Repeat([]byte{1}, 32)}
	want := "1 /dev/nbd0 /dev/nbd0 4096 4096 256 257 sha256 " + hex.EncodeToString(p.RootHash) + " ab 1 restart_on_corruption"
	if got := p.Table("/dev/nbd0", "/dev/nbd0", "restart_on_corruption"); got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
}

func TestCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	data := randomData(5, 2000*4096)
	if _, err := Format(ctx, bytes.NewReader(data), int64(len(data)), &memDev{}, Options{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v", err)
	}
}
