package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// CheckRunImage runs on the host, outside the VM, after a VM run that left
// ArtifactRunImage below artifactDir: cryptsetup, the oracle, must read the
// header the enclave's first launch wrote as LUKS2 with an argon2id keyslot
// and an aes-xts-plain64 segment, unlock it with RunKey, and refuse a
// wrong key. It returns the luksDump text. cryptsetup must be on PATH.
func CheckRunImage(ctx context.Context, artifactDir string) (string, error) {
	img := filepath.Join(artifactDir, ArtifactRunImage)
	if _, err := os.Stat(img); err != nil {
		return "", fmt.Errorf("e2e: no run image artifact: %w", err)
	}
	cs, err := exec.LookPath("cryptsetup")
	if err != nil {
		return "", fmt.Errorf("e2e: %w (apt-get install cryptsetup-bin)", err)
	}
	out, err := exec.CommandContext(ctx, cs, "luksDump", img).CombinedOutput()
	dump := string(out)
	if err != nil {
		return dump, fmt.Errorf("e2e: cryptsetup luksDump %s: %w\n%s", img, err, out)
	}
	for _, want := range []string{"Version:       \t2", "cipher: aes-xts-plain64", "PBKDF:      argon2id", "Keyslots:\n  0: luks2"} {
		if !strings.Contains(dump, want) {
			return dump, fmt.Errorf("e2e: cryptsetup luksDump %s lacks %q", img, want)
		}
	}
	dir, err := os.MkdirTemp("", "e2e-key")
	if err != nil {
		return dump, err
	}
	defer os.RemoveAll(dir)
	keyFile := filepath.Join(dir, "key")
	tryKey := func(key string) error {
		if err := os.WriteFile(keyFile, []byte(key), 0o600); err != nil {
			return err
		}
		if out, err := exec.CommandContext(ctx, cs, "open", "--test-passphrase", "--key-file", keyFile, img).CombinedOutput(); err != nil {
			return fmt.Errorf("%w: %s", err, strings.TrimSpace(string(out)))
		}
		return nil
	}
	if err := tryKey(RunKey); err != nil {
		return dump, fmt.Errorf("e2e: cryptsetup open --test-passphrase %s with the scenarios' key: %w", img, err)
	}
	if err := tryKey("not " + RunKey); err == nil {
		return dump, fmt.Errorf("e2e: cryptsetup unlocked %s with a wrong key", img)
	}
	return dump, nil
}
