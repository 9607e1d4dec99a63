package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/enclave-storage/enclave-storage/crypt"
)

// CheckRunImage runs on the host, outside the VM, after a VM run that left
// ArtifactRunImage below artifactDir: cryptsetup, the oracle, must read the
// header the enclave's first launch wrote as LUKS2 with an argon2id keyslot
// and an aes-xts-plain64 segment, unlock it with RunKey, and refuse a
// wrong key. Then checkRunFS decrypts the data segment and e2fsck checks
// the ext4 in it. It returns the luksDump and e2fsck text. cryptsetup must
// be on PATH.
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
	fsck, err := checkRunFS(ctx, img, dir)
	return dump + fsck, err
}

// checkRunFS decrypts the data segment of the run image with RunKey and
// package crypt's sector cipher (bit-for-bit dm-crypt) into a plain file
// in dir, and has e2fsck -fn, the oracle, check the ext4 filesystem the
// enclave's Go formatter wrote and the kernel then used. It returns
// e2fsck's output, or a note when e2fsck is not installed or the image
// holds only the header.
func checkRunFS(ctx context.Context, img, dir string) (string, error) {
	fsck, err := exec.LookPath("e2fsck")
	if err != nil {
		return "\ne2fsck not installed (apt-get install e2fsprogs): run volume's ext4 not checked\n", nil
	}
	f, err := os.Open(img)
	if err != nil {
		return "", fmt.Errorf("e2e: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("e2e: %w", err)
	}
	info, err := crypt.ReadInfo(ctx, f)
	if err != nil {
		return "", fmt.Errorf("e2e: %s: %w", img, err)
	}
	if fi.Size() <= info.Offset {
		return "\nrun image holds only the LUKS2 header: its ext4 not checked\n", nil
	}
	vol, err := crypt.Open(ctx, f, []byte(RunKey))
	if err != nil {
		return "", fmt.Errorf("e2e: unlocking %s with package crypt: %w", img, err)
	}
	defer vol.Zero()
	size := vol.Size
	if size == 0 {
		size = fi.Size() - vol.Offset
	}
	size -= size % int64(vol.SectorSize)
	sc, err := vol.SectorCipher()
	if err != nil {
		return "", fmt.Errorf("e2e: %w", err)
	}
	plain := filepath.Join(dir, "run-plain.img")
	out, err := os.Create(plain)
	if err != nil {
		return "", fmt.Errorf("e2e: %w", err)
	}
	defer out.Close()
	buf := make([]byte, 1<<20)
	for off := int64(0); off < size; off += int64(len(buf)) {
		b := buf[:min(int64(len(buf)), size-off)]
		if _, err := f.ReadAt(b, vol.Offset+off); err != nil {
			return "", fmt.Errorf("e2e: reading %s: %w", img, err)
		}
		if err := sc.Decrypt(b, b, off); err != nil {
			return "", fmt.Errorf("e2e: %w", err)
		}
		if _, err := out.WriteAt(b, off); err != nil {
			return "", fmt.Errorf("e2e: %w", err)
		}
	}
	if err := out.Close(); err != nil {
		return "", fmt.Errorf("e2e: %w", err)
	}
	b, err := exec.CommandContext(ctx, fsck, "-fn", plain).CombinedOutput()
	if err != nil {
		return string(b), fmt.Errorf("e2e: e2fsck -fn on the decrypted run volume of %s: %w\n%s", img, err, b)
	}
	return "\ne2fsck -fn of the decrypted run volume:\n" + string(b), nil
}
