package crypt

import (
	"bytes"
	"context"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// fastKDF keeps tests quick; cryptsetup's minimums.
var (
	fastArgon2 = KDF{Type: Argon2id, Time: 4, Memory: 32, Threads: 1}
	fastPBKDF2 = KDF{Type: PBKDF2, Iterations: 1000}
)

func cryptsetupPath(t testing.TB) string {
	t.Helper()
	p := findCryptsetup()
	if p == "" {
		t.Skip("cryptsetup not installed (apt-get install cryptsetup-bin); oracle test skipped")
	}
	return p
}

// findCryptsetup returns the cryptsetup binary's path, or "".
func findCryptsetup() string {
	if p, err := exec.LookPath("cryptsetup"); err == nil {
		return p
	}
	for _, d := range []string{"/usr/sbin/cryptsetup", "/sbin/cryptsetup"} {
		if _, err := os.Stat(d); err == nil {
			return d
		}
	}
	return ""
}

// cryptsetupInstalled reports whether oracle checks inside otherwise
// self-contained tests can run.
func cryptsetupInstalled() bool { return findCryptsetup() != "" }

// cryptsetup runs the real tool; it never needs device-mapper for the
// commands used here (luksFormat/luksDump/test-passphrase on plain files).
func cryptsetup(t testing.TB, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(cryptsetupPath(t), args...)
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func mustCryptsetup(t testing.TB, args ...string) string {
	t.Helper()
	out, err := cryptsetup(t, args...)
	if err != nil {
		t.Fatalf("cryptsetup %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func writeKeyFile(t testing.TB, dir, name string, key []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, key, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// sparseFile creates a sparse file of size bytes and returns it open.
func sparseFile(t testing.TB, dir, name string, size int64) (*os.File, string) {
	t.Helper()
	p := filepath.Join(dir, name)
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f, p
}

// dumpVolumeKey asks cryptsetup for the volume key of the header at hdr.
func dumpVolumeKey(t testing.TB, hdr, keyFile string) []byte {
	t.Helper()
	out := mustCryptsetup(t, "luksDump", "--dump-volume-key", "--batch-mode", "--key-file", keyFile, hdr)
	i := strings.Index(out, "MK dump:")
	if i < 0 {
		t.Fatalf("no MK dump in cryptsetup output:\n%s", out)
	}
	vk, err := hex.DecodeString(strings.Join(strings.Fields(out[i+len("MK dump:"):]), ""))
	if err != nil {
		t.Fatalf("parse MK dump: %v\n%s", err, out)
	}
	return vk
}

func fileBytes(t testing.TB, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func sameBytes(a, b []byte) bool { return bytes.Equal(a, b) }

var bg = context.Background()

func contextWithCancel() (context.Context, context.CancelFunc) { return context.WithCancel(bg) }
