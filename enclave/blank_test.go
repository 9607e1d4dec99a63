package enclave

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

func TestClassifyRun(t *testing.T) {
	const size = 8 << 20
	at := func(off int, b []byte) []byte {
		d := make([]byte, size)
		copy(d[off:], b)
		return d
	}
	tests := []struct {
		name string
		data []byte
		want RunState
	}{
		{"all zero", make([]byte, size), RunBlank},
		{"small and zero", make([]byte, 4096), RunBlank},
		{"empty device", nil, RunBlank},
		{"LUKS primary", at(0, luksMagic1), RunLUKS},
		{"secondary at 16K only", at(16<<10, luksMagic2), RunLUKS},
		{"secondary at 4M only", at(4<<20, luksMagic2), RunLUKS},
		{"primary magic in a secondary slot", at(16<<10, luksMagic1), RunForeign},
		{"secondary magic at 0 (conservatively LUKS)", at(0, luksMagic2), RunLUKS},
		{"ext4 superblock", at(1080, []byte{0x53, 0xef}), RunForeign},
		{"byte at the end of the first MiB", at(BlankSize-1, []byte{1}), RunForeign},
		{"data past the first MiB, between samples", at(BlankSize, []byte{1}), RunBlank},
		{"data in the last block only (wiped header)", at(size-1, []byte{1}), RunTampered},
		{"data in a middle sample only (wiped header)", at(int(SampleOffsets(size)[32]), []byte{1}), RunTampered},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ClassifyRun(bytes.NewReader(tt.data), int64(len(tt.data)))
			if err != nil {
				t.Fatalf("ClassifyRun: %v", err)
			}
			if got != tt.want {
				t.Fatalf("ClassifyRun = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestClassifyRunCryptsetup checks the rule against headers written by the
// real cryptsetup: a LUKS2 device stays LUKS even with its primary header
// wiped (the secondary remains), so it is never reformatted.
func TestClassifyRunCryptsetup(t *testing.T) {
	bin, err := exec.LookPath("cryptsetup")
	if err != nil {
		t.Skip("cryptsetup not installed (apt-get install cryptsetup-bin)")
	}
	img := filepath.Join(t.TempDir(), "run.img")
	if err := os.WriteFile(img, make([]byte, 32<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(t.TempDir(), "key")
	os.WriteFile(key, []byte("correct horse"), 0o600)
	for _, hdr := range []string{"16384", "4194304"} { // smallest and largest LUKS2 metadata areas
		cmd := exec.Command(bin, "luksFormat", "--batch-mode", "--type", "luks2", "--pbkdf", "pbkdf2",
			"--pbkdf-force-iterations", "1000", "--luks2-metadata-size", hdr, "--key-file", key, img)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("cryptsetup luksFormat: %v: %s", err, out)
		}
		f, err := os.OpenFile(img, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := ClassifyRun(f, 32<<20); err != nil || got != RunLUKS {
			t.Fatalf("metadata %s: fresh luksFormat classified %v, %v", hdr, got, err)
		}
		if _, err := f.WriteAt(make([]byte, 4096), 0); err != nil { // destroy the primary header
			t.Fatal(err)
		}
		if got, err := ClassifyRun(f, 32<<20); err != nil || got != RunLUKS {
			t.Fatalf("metadata %s: wiped primary classified %v, %v; want LUKS (secondary header)", hdr, got, err)
		}
		// Wipe the whole metadata area: now only foreign keyslot bytes remain.
		if _, err := f.WriteAt(make([]byte, 16<<20), 0); err != nil {
			t.Fatal(err)
		}
		if got, err := ClassifyRun(f, 32<<20); err != nil || got != RunBlank {
			t.Fatalf("metadata %s: zeroed first 16 MiB classified %v, %v", hdr, got, err)
		}
		f.Close()
	}
}

// FuzzClassifyRun: the run device's content comes from the parent.
func FuzzClassifyRun(f *testing.F) {
	f.Add([]byte("LUKS\xba\xbe\x00\x02"))
	f.Add(make([]byte, 100))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := ClassifyRun(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			t.Fatal(err)
		}
		if got == RunBlank && bytes.Contains(b[:min(len(b), BlankSize)], luksMagic1) {
			t.Fatalf("blank device holds a LUKS magic")
		}
	})
}
