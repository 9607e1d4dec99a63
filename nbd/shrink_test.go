package nbd

import (
	"bytes"
	"os"
	"testing"

	"github.com/enclave-storage/enclave-storage/nbd/nbdtest"
)

// TestReadsAfterShrink serves reads of cached data, then shrinks the
// image behind the server's back: what was cut off must read as zeroes,
// and what was kept as before, on the same connection, rather than fail
// the connection or send stale pages.
func TestReadsAfterShrink(t *testing.T) {
	for _, network := range []string{"tcp", "unix"} {
		t.Run(network, func(t *testing.T) {
			f := startFixture(t, Options{}, runSize)
			addr := f.addr(network)
			ctx := testCtx(t)
			c, err := nbdtest.Dial(ctx, network, addr, "run")
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			want := randomBytes(t, runSize)
			if err := c.WriteAt(ctx, want, 0, 0); err != nil {
				t.Fatal(err)
			}
			got := make([]byte, runSize)
			for range 2 { // the second time, surely from the page cache
				if err := c.ReadAt(ctx, got, 0); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, want) {
					t.Fatal("read back differs from what was written")
				}
			}
			if err := os.Truncate(f.runPath, runSize/2); err != nil {
				t.Fatal(err)
			}
			for _, r := range []struct{ off, n int }{{runSize / 2, runSize / 2}, {runSize/2 - 4096, 8192}, {0, runSize}} {
				got := make([]byte, r.n)
				if err := c.ReadAt(ctx, got, uint64(r.off)); err != nil {
					t.Fatalf("read %d+%d after the shrink: %v", r.off, r.n, err)
				}
				wantr := make([]byte, r.n)
				copy(wantr, want[r.off:min(r.off+r.n, runSize/2)])
				if !bytes.Equal(got, wantr) {
					t.Fatalf("read %d+%d after the shrink: not the kept data followed by zeroes", r.off, r.n)
				}
			}
		})
	}
}
