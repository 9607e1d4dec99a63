package crypt

import (
	"bytes"
	"context"
	"crypto/pbkdf2"
	"errors"
	"testing"
	"time"
)

// TestPBKDF2MatchesStdlib: our cancellable PBKDF2 agrees with
// crypto/pbkdf2 for every hash a header may name and output lengths that
// cross block boundaries.
func TestPBKDF2MatchesStdlib(t *testing.T) {
	for _, name := range []string{"sha1", "sha256", "sha384", "sha512"} {
		h, _ := hashByName(name)
		for _, tt := range []struct{ iter, keyLen int }{{1, 20}, {2, 32}, {1000, 64}, {pbkdf2CheckEvery + 3, 100}} {
			want, err := pbkdf2.Key(h, "password", []byte("NaCl salt"), tt.iter, tt.keyLen)
			if err != nil {
				t.Fatal(err)
			}
			got, err := pbkdf2Key(bg, h, []byte("password"), []byte("NaCl salt"), tt.iter, tt.keyLen)
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("%s iter %d len %d: %x, %v; want %x", name, tt.iter, tt.keyLen, got, err, want)
			}
		}
	}
}

// TestPBKDF2Cancels: 2^32-1 iterations (hours of work, what a hostile
// header may ask for) stop when the context ends. Without the checks this
// test would run until go test's timeout.
func TestPBKDF2Cancels(t *testing.T) {
	h, _ := hashByName("sha256")
	ctx, cancel := context.WithTimeout(bg, 50*time.Millisecond)
	defer cancel()
	if _, err := pbkdf2Key(ctx, h, []byte("k"), []byte("s"), maxIterations, 32); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("pbkdf2Key: %v, want DeadlineExceeded", err)
	}
}

// TestHugeIterationsCancel: a checksummed header whose keyslot KDF or
// digest asks for 2^32-1 PBKDF2 iterations returns when Open's context
// ends, rather than hanging PID 1 (found against main).
func TestHugeIterationsCancel(t *testing.T) {
	key := []byte("key")
	for _, path := range [][]string{{"keyslots", "0", "kdf", "iterations"}, {"digests", "0", "iterations"}} {
		t.Run(path[0], func(t *testing.T) {
			f, _ := formatted(t, key)
			rewriteJSON(t, f, func(m map[string]any) []byte {
				obj(m, path[:len(path)-1]...)[path[len(path)-1]] = maxIterations
				return nil
			})
			ctx, cancel := context.WithTimeout(bg, 100*time.Millisecond)
			defer cancel()
			if _, err := Open(ctx, f, key); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Open: %v, want DeadlineExceeded", err)
			}
		})
	}
}
