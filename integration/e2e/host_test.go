package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// newestArtifact returns the newest integration/out/run-*/<name>, or "".
func newestArtifact(t *testing.T, name string) string {
	t.Helper()
	matches, err := filepath.Glob(filepath.Join("..", "out", "run-*", name))
	if err != nil {
		t.Fatal(err)
	}
	var newest string
	var newestMod int64
	for _, m := range matches {
		fi, err := os.Stat(m)
		if err != nil {
			continue
		}
		if mod := fi.ModTime().UnixNano(); newest == "" || mod > newestMod {
			newest, newestMod = m, mod
		}
	}
	return newest
}

// TestHostLuksDump checks, on the host, the run image the first launch in
// the VM formatted: cryptsetup must read it as LUKS2 with one argon2id
// keyslot and an aes-xts-plain64 segment, and unlock it with the key. The harness removes its
// artifact directory when the run passes, so this needs
// scripts/integration.sh -guest.pkgs=./integration/e2e -keep (it skips
// when no run image is there).
func TestHostLuksDump(t *testing.T) {
	img := newestArtifact(t, ArtifactRunImage)
	if img == "" {
		t.Skipf("no integration/out/run-*/%s: run scripts/integration.sh -guest.pkgs=./integration/e2e -keep first", ArtifactRunImage)
	}
	cs, err := exec.LookPath("cryptsetup")
	if err != nil {
		t.Skip("cryptsetup not installed (apt-get install cryptsetup-bin)")
	}
	out, err := exec.Command(cs, "luksDump", img).CombinedOutput()
	if err != nil {
		t.Fatalf("cryptsetup luksDump %s: %v\n%s", img, err, out)
	}
	t.Logf("cryptsetup luksDump %s:\n%s", img, out)
	for _, want := range []string{"Version:       \t2", "cipher: aes-xts-plain64", "PBKDF:      argon2id", "Keyslots:\n  0: luks2"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("luksDump lacks %q", want)
		}
	}
	keyFile := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(keyFile, []byte(RunKey), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(cs, "open", "--test-passphrase", "--key-file", keyFile, img).CombinedOutput(); err != nil {
		t.Errorf("cryptsetup open --test-passphrase with the scenarios' key: %v\n%s", err, out)
	}
	if err := os.WriteFile(keyFile, []byte("not "+RunKey), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(cs, "open", "--test-passphrase", "--key-file", keyFile, img).CombinedOutput(); err == nil {
		t.Errorf("cryptsetup unlocked the run image with a wrong key:\n%s", out)
	}
}
