package imgbuild_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/enclave-storage/enclave-storage/imgbuild"
)

// TestSaltAcrossTransports reads one image as an oci-archive and as the
// docker-archive skopeo converts it to (two manifests, two manifest
// digests) and checks the default salt, so rootfs.img, the root hash and
// the PCRs, are byte for byte the same; and that another image still gets
// another salt.
func TestSaltAcrossTransports(t *testing.T) {
	skopeo, err := exec.LookPath("skopeo")
	if err != nil {
		t.Skip("skopeo not installed: cannot convert between oci-archive and docker-archive")
	}
	dir := t.TempDir()
	kernel, initBin := filepath.Join(dir, "bzImage"), filepath.Join(dir, "nbd-enclave")
	if err := os.WriteFile(kernel, bytes.Repeat([]byte("KERNEL"), 1000), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(initBin, []byte("\x7fELF not really"), 0o755); err != nil {
		t.Fatal(err)
	}
	a, b := "oci-archive:"+filepath.Join(dir, "a.tar"), "docker-archive:"+filepath.Join(dir, "b.tar")
	for _, c := range [][2]string{{layout(t, appImage(t, "SERVER v1")), a}, {a, b}} {
		if out, err := exec.Command(skopeo, "--insecure-policy", "copy", "-q", c[0], c[1]).CombinedOutput(); err != nil {
			t.Fatalf("skopeo copy %s %s: %v\n%s", c[0], c[1], err, out)
		}
	}
	opts := func(o *imgbuild.Options) { o.Kernel, o.Init = kernel, initBin }
	ra, rb := build(t, a, opts), build(t, b, opts)
	if ra.Manifest.Image.Digest == rb.Manifest.Image.Digest {
		t.Fatalf("both transports gave manifest digest %s: the test proves nothing", ra.Manifest.Image.Digest)
	}
	// Not enclave.eif: its unmeasured metadata names the reference and
	// manifest digest it was built from.
	for _, name := range []string{imgbuild.RootfsFile, imgbuild.PCRsFile, imgbuild.KeyPolicyFile} {
		x, err := os.ReadFile(filepath.Join(filepath.Dir(ra.Rootfs), name))
		if err != nil {
			t.Fatal(err)
		}
		y, err := os.ReadFile(filepath.Join(filepath.Dir(rb.Rootfs), name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(x, y) {
			t.Errorf("%s differs between %s and %s", name, a, b)
		}
	}
	if !bytes.Equal(ra.Manifest.Verity.RootHash, rb.Manifest.Verity.RootHash) || !bytes.Equal(ra.Manifest.Verity.Salt, rb.Manifest.Verity.Salt) {
		t.Errorf("root hash %x salt %x vs %x %x", []byte(ra.Manifest.Verity.RootHash), []byte(ra.Manifest.Verity.Salt),
			[]byte(rb.Manifest.Verity.RootHash), []byte(rb.Manifest.Verity.Salt))
	}
	if ra.PCRValues.PCR0.String() != rb.PCRValues.PCR0.String() {
		t.Errorf("PCR0 %s vs %s", ra.PCRValues.PCR0, rb.PCRValues.PCR0)
	}
	other := build(t, layout(t, appImage(t, "SERVER v2")), nil)
	if bytes.Equal(other.Manifest.Verity.Salt, ra.Manifest.Verity.Salt) {
		t.Errorf("two different images got the same salt %x", []byte(ra.Manifest.Verity.Salt))
	}
}
