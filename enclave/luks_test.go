package enclave

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/enclave-storage/enclave-storage/crypt"
)

// TestFormatOptions: machine keys get PBKDF2 at cryptsetup's minimum,
// passphrases argon2id, an explicit KDF wins; and what the enclave
// formats, the enclave's policy opens.
func TestFormatOptions(t *testing.T) {
	fast := crypt.KDF{Type: crypt.Argon2id, Time: 4, Memory: 32, Threads: 1}
	tests := []struct {
		name string
		opts *crypt.FormatOptions
		key  []byte
		want crypt.KDF
	}{
		{"random 64-byte key", nil, make([]byte, 64), crypt.MachineKeyKDF()},
		{"32-byte key file", nil, make([]byte, 32), crypt.MachineKeyKDF()},
		{"31-byte passphrase", nil, make([]byte, 31), crypt.DefaultKDF()},
		{"options without a KDF", &crypt.FormatOptions{Label: "run"}, make([]byte, 64), crypt.MachineKeyKDF()},
		{"explicit KDF", &crypt.FormatOptions{KDF: fast}, make([]byte, 64), fast},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var before crypt.FormatOptions
			if tt.opts != nil {
				before = *tt.opts
			}
			got := formatOptions(tt.opts, tt.key)
			if got.KDF != tt.want {
				t.Fatalf("KDF = %+v, want %+v", got.KDF, tt.want)
			}
			if tt.opts != nil && tt.opts.KDF != before.KDF {
				t.Fatal("formatOptions changed the caller's options")
			}
			if tt.want == crypt.DefaultKDF() {
				return // argon2id: opened by crypt's own policy tests
			}
			f, err := os.Create(filepath.Join(t.TempDir(), "run"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if err := f.Truncate(20 << 20); err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			if _, err := crypt.Format(ctx, f, tt.key, got); err != nil {
				t.Fatal(err)
			}
			if _, err := crypt.OpenWithPolicy(ctx, f, tt.key, crypt.EnclavePolicy()); err != nil {
				t.Fatalf("the enclave's policy refuses its own format: %v", err)
			}
		})
	}
}

// TestRunCryptTarget checks OpenRun's table against crypt.Volume.Params,
// the table cryptsetup open loads (crypt's oracle tests compare the two),
// with cryptsetup's --perf-no_read_workqueue --perf-no_write_workqueue
// options in dm-crypt's order (Documentation/admin-guide/device-mapper/
// dm-crypt.rst; the kernel prints them back in that order).
func TestRunCryptTarget(t *testing.T) {
	key := make([]byte, 64)
	for i := range key {
		key[i] = byte(i)
	}
	tests := []struct {
		name string
		vol  crypt.Volume
		opts string
	}{
		{"512-byte sectors", crypt.Volume{Cipher: "aes-xts-plain64", Key: key, SectorSize: 512, Offset: 16 << 20},
			" 2 no_read_workqueue no_write_workqueue"},
		{"4096-byte sectors", crypt.Volume{Cipher: "aes-xts-plain64", Key: key, SectorSize: 4096, Offset: 16 << 20},
			" 3 no_read_workqueue no_write_workqueue sector_size:4096"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			line, err := runCryptTarget(&tt.vol, "43:0", 8192).TableLine()
			if err != nil {
				t.Fatal(err)
			}
			base, _, _ := strings.Cut(tt.vol.Params("43:0"), " 1 sector_size:")
			if want := base + tt.opts; line.Params != want || line.Type != "crypt" || line.Length != 8192 || line.Start != 0 {
				t.Errorf("table line %d %d %s %q\nwant       0 8192 crypt %q", line.Start, line.Length, line.Type, line.Params, want)
			}
		})
	}
}
