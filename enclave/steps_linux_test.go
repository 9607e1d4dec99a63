//go:build linux

package enclave

import (
	"context"
	"crypto/rand"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/enclave-storage/enclave-storage/nbdclient"
	"github.com/enclave-storage/enclave-storage/nbdkernel"
)

// TestMkfsAndDetect formats a file of random bytes (what a fresh dm-crypt
// mapping reads as) the way the first launch does and checks hasExt4 tells
// it from a device without a filesystem, and that e2fsck accepts it.
func TestMkfsAndDetect(t *testing.T) {
	img := filepath.Join(t.TempDir(), "upper.img")
	garbage := make([]byte, 16<<20)
	rand.Read(garbage)
	garbage[1080], garbage[1081] = 0, 0 // no ext4 magic by chance
	if err := os.WriteFile(img, garbage, 0o600); err != nil {
		t.Fatal(err)
	}
	if ok, err := hasExt4(img); err != nil || ok {
		t.Fatalf("hasExt4(random) = %v, %v", ok, err)
	}
	st, err := Mkfs(context.Background(), img)
	if err != nil {
		t.Fatalf("Mkfs: %v", err)
	}
	if st.Size != int64(len(garbage)) {
		t.Errorf("Mkfs made a %d-byte filesystem on a %d-byte device", st.Size, len(garbage))
	}
	if ok, err := hasExt4(img); err != nil || !ok {
		t.Fatalf("hasExt4(after mkfs) = %v, %v", ok, err)
	}
	if fsck, err := exec.LookPath("e2fsck"); err != nil {
		t.Log("e2fsck not installed (apt-get install e2fsprogs): filesystem not checked")
	} else if out, err := exec.Command(fsck, "-fn", img).CombinedOutput(); err != nil {
		t.Fatalf("e2fsck -fn: %v: %s", err, out)
	}
	if _, err := Mkfs(context.Background(), filepath.Join(t.TempDir(), "missing", "dev")); err == nil {
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
