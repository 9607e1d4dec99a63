//go:build linux

package enclave

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/enclave-storage/enclave-storage/nbdclient"
	"github.com/enclave-storage/enclave-storage/nbdkernel"
)

// TestMkfsAndDetect formats a file with the real mkfs.ext4 the way the
// first launch does and checks hasExt4 tells it from a zeroed device.
func TestMkfsAndDetect(t *testing.T) {
	mkfs, err := exec.LookPath("mkfs.ext4")
	if err != nil {
		t.Skip("mkfs.ext4 not installed (apt-get install e2fsprogs)")
	}
	img := filepath.Join(t.TempDir(), "upper.img")
	if err := os.WriteFile(img, make([]byte, 16<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	if ok, err := hasExt4(img); err != nil || ok {
		t.Fatalf("hasExt4(zeroes) = %v, %v", ok, err)
	}
	if err := Mkfs(context.Background(), mkfs, img); err != nil {
		t.Fatalf("Mkfs: %v", err)
	}
	if ok, err := hasExt4(img); err != nil || !ok {
		t.Fatalf("hasExt4(after mkfs) = %v, %v", ok, err)
	}
	if fsck, err := exec.LookPath("e2fsck"); err == nil {
		if out, err := exec.Command(fsck, "-fn", img).CombinedOutput(); err != nil {
			t.Fatalf("e2fsck -fn: %v: %s", err, out)
		}
	}
	if err := Mkfs(context.Background(), mkfs, filepath.Join(t.TempDir(), "missing", "dev")); err == nil {
		t.Fatal("Mkfs on a missing device succeeded")
	}
}

func TestKernelConfig(t *testing.T) {
	tests := []struct {
		name   string
		cfg    Config
		exp    nbdclient.Export
		wantBS uint64
		ok     bool
	}{
		{"defaults, 4 KiB multiple", Config{}, nbdclient.Export{Name: "image", Size: 1 << 30, Flags: 3}, 4096, true},
		{"odd size falls back to 512", Config{}, nbdclient.Export{Name: "run", Size: 1<<20 + 512}, 512, true},
		{"server needs 64 KiB blocks", Config{}, nbdclient.Export{Name: "x", Size: 1 << 20,
			BlockSize: nbdclient.BlockSize{Minimum: 65536, Preferred: 65536, Maximum: 65536}}, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kc, err := kernelConfig(tt.cfg, &tt.exp)
			if tt.ok != (err == nil) {
				t.Fatalf("kernelConfig: %v", err)
			}
			if !tt.ok {
				return
			}
			if kc.BlockSize != tt.wantBS || kc.Size != tt.exp.Size || kc.ServerFlags != uint64(tt.exp.Flags) ||
				kc.Timeout != nbdkernel.DefaultTimeout || kc.DeadConnTimeout != nbdkernel.DefaultDeadConnTimeout ||
				kc.Index != nbdkernel.AnyIndex || kc.BackendID != tt.exp.Name {
				t.Fatalf("kernelConfig = %+v", kc)
			}
		})
	}
}
