package erofs

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/enclave-storage/enclave-storage/fstree"
)

// BenchmarkWrite writes 256 MiB of file content (from a warm spool file)
// plus 4096 small files to an image file; see scripts/bench-erofs.sh for
// the comparison with mkfs.erofs and mkfs.ext4.
func BenchmarkWrite(b *testing.B) {
	dir := b.TempDir()
	spool := filepath.Join(dir, "spool")
	data := make([]byte, 32<<20)
	rand.Read(data)
	if err := os.WriteFile(spool, data, 0o644); err != nil {
		b.Fatal(err)
	}
	tr := fstree.New()
	var total int64
	for i := 0; i < 8; i++ {
		n := &fstree.Inode{Type: fstree.TypeRegular, Perm: 0o644, Content: fstree.FileRange{Name: spool, Length: int64(len(data)) - int64(i)}}
		tr.Insert(fmt.Sprintf("big%d", i), n)
		total += n.Size()
	}
	tr.Insert("small", fstree.NewDir(0o755, 0, 0, t0))
	for i := 0; i < 4096; i++ {
		n := &fstree.Inode{Type: fstree.TypeRegular, Perm: 0o644, Content: fstree.FileRange{Name: spool, Offset: int64(i) * 997, Length: int64(i)}}
		tr.Insert(fmt.Sprintf("small/f%d", i), n)
		total += n.Size()
	}
	img := filepath.Join(dir, "img")
	b.SetBytes(total)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		f, err := os.Create(img)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := Write(context.Background(), f, tr, Options{BuildTime: t0}); err != nil {
			b.Fatal(err)
		}
		f.Close()
	}
}
