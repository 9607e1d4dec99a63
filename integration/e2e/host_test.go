package e2e

import (
	"context"
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

// TestHostLuksDump runs CheckRunImage on the newest kept artifact
// directory. TestVM in package integration runs the same check after every
// passing VM run; this test is for a run kept with
// scripts/integration.sh -guest.pkgs=./integration/e2e -keep (it skips
// when no run image is there).
func TestHostLuksDump(t *testing.T) {
	img := newestArtifact(t, ArtifactRunImage)
	if img == "" {
		t.Skipf("no integration/out/run-*/%s: run scripts/integration.sh -guest.pkgs=./integration/e2e -keep first", ArtifactRunImage)
	}
	if _, err := exec.LookPath("cryptsetup"); err != nil {
		t.Skip("cryptsetup not installed (apt-get install cryptsetup-bin)")
	}
	dir := strings.TrimSuffix(img, ArtifactRunImage)
	dump, err := CheckRunImage(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("cryptsetup luksDump %s:\n%s", img, dump)
}
