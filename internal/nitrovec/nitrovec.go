// Package nitrovec finds the real AWS Nitro test vectors (an attestation
// document, a KMS CiphertextForRecipient and its key) for tests.
//
// The vectors live outside the repository, in shared/testdata/nitro/ next to
// the checkout (see that directory's README for their provenance). Tests find
// the directory by walking up from their working directory, so they work
// from any checkout or worktree below it, and skip, saying so, when it is
// absent.
package nitrovec

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// rel is where the vectors sit relative to an ancestor of the checkout.
const rel = "shared/testdata/nitro"

// Dir returns the vector directory, or skips the test if there is none.
func Dir(tb testing.TB) string {
	tb.Helper()
	d, ok := find(tb)
	if !ok {
		tb.Skipf("real Nitro vectors not found: no %s above the working directory", rel)
	}
	return d
}

// find walks up from the working directory to the vector directory.
func find(tb testing.TB) (string, bool) {
	wd, err := os.Getwd()
	if err != nil {
		tb.Fatalf("getwd: %v", err)
	}
	for d := wd; ; d = filepath.Dir(d) {
		p := filepath.Join(d, rel)
		if fi, err := os.Stat(p); err == nil && fi.IsDir() {
			return p, true
		}
		if filepath.Dir(d) == d {
			return "", false
		}
	}
}

// Read returns the named vector's bytes, base64-decoded when its name ends
// in .b64, or skips the test when the vectors are absent.
func Read(tb testing.TB, name string) []byte {
	tb.Helper()
	return read(tb, Dir(tb), name)
}

// Seed returns the named vector like Read, or nil when the vectors are
// absent: for fuzz seeds, which are welcome but not required.
func Seed(tb testing.TB, name string) []byte {
	tb.Helper()
	d, ok := find(tb)
	if !ok {
		return nil
	}
	return read(tb, d, name)
}

func read(tb testing.TB, dir, name string) []byte {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		tb.Fatalf("read vector: %v", err)
	}
	if !strings.HasSuffix(name, ".b64") {
		return b
	}
	d, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b)))
	if err != nil {
		tb.Fatalf("vector %s: %v", name, err)
	}
	return d
}
