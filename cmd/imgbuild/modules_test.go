package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/enclave-storage/enclave-storage/imgbuild"
	"github.com/enclave-storage/enclave-storage/kmod"
)

// buildWithModules runs "imgbuild build --kernel-modules" and returns the
// build output and "describe" and "describe --json" of the EIF.
func buildWithModules(t *testing.T, kernel, modules string, extra ...string) (build, text string, info describeInfo) {
	t.Helper()
	dir := t.TempDir()
	writeTestLayout(t, filepath.Join(dir, "layout"))
	if err := os.WriteFile(filepath.Join(dir, "nbd-enclave"), []byte("\x7fELF stand-in"), 0o755); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"build", "--in", "oci:" + dir + "/layout:app", "--out", dir + "/out",
		"--kernel", kernel, "--init", dir + "/nbd-enclave", "--kernel-modules", modules, "--progress", "plain"}, extra...)
	env, out, errb := testEnv()
	if rc := run(context.Background(), env, args); rc != 0 {
		t.Fatalf("build: rc %d\n%s%s", rc, out, errb)
	}
	build = out.String()
	env, out, errb = testEnv()
	if rc := run(context.Background(), env, []string{"describe", dir + "/out/enclave.eif"}); rc != 0 {
		t.Fatalf("describe: rc %d\n%s", rc, errb)
	}
	text = out.String()
	env, out, errb = testEnv()
	if rc := run(context.Background(), env, []string{"describe", "--json", dir + "/out/enclave.eif"}); rc != 0 {
		t.Fatalf("describe --json: rc %d\n%s", rc, errb)
	}
	if err := json.Unmarshal(out.Bytes(), &info); err != nil {
		t.Fatal(err)
	}
	return build, text, info
}

// TestBuildKernelModules builds with the synthetic module tree of package
// kmod's tests and checks describe lists what kmod resolves, in order, in
// the bootstrap ramdisk, each module decompressed.
func TestBuildKernelModules(t *testing.T) {
	tree := "../../kmod/testdata/tree"
	kernel := filepath.Join(t.TempDir(), "bzImage")
	if err := os.WriteFile(kernel, []byte(strings.Repeat("K", 4096)), 0o644); err != nil {
		t.Fatal(err)
	}
	names := "dm-verity,erofs,ext4,vsock_loopback,nsm?"
	build, text, info := buildWithModules(t, kernel, tree, "--kernel-module-names", names)
	tr, err := kmod.Open(tree)
	if err != nil {
		t.Fatal(err)
	}
	want, err := tr.Resolve(kmod.ParseNames(names))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(build, fmt.Sprintf("modules:     %d for %s", len(want), tr.Release)) {
		t.Errorf("build output does not report the modules:\n%s", build)
	}
	if len(info.KernelModules) != len(want) {
		t.Fatalf("describe lists %d modules, want %d:\n%s", len(info.KernelModules), len(want), text)
	}
	for i, m := range info.KernelModules {
		w := want[i]
		if m.Name != w.Name || m.Path != kmod.RamdiskPath(tr.Release, w) || m.Ramdisk != 0 {
			t.Errorf("module %d: %+v, want %s at %s in ramdisk 0", i, m, w.Name, kmod.RamdiskPath(tr.Release, w))
		}
		plain, err := tr.ReadModule(w)
		if err != nil {
			t.Fatal(err)
		}
		if m.Size != int64(len(plain)) {
			t.Errorf("%s: %d bytes in the ramdisk, %d decompressed", m.Name, m.Size, len(plain))
		}
		if !strings.Contains(text, m.Path) {
			t.Errorf("describe text lacks %s:\n%s", m.Path, text)
		}
	}
}

// TestBuildKernelModulesDebian builds with Debian's kernel and module tree
// from integration/.cache and checks the EIF carries what modprobe-checked
// resolution gives for the defaults.
func TestBuildKernelModulesDebian(t *testing.T) {
	roots, _ := filepath.Glob("../../integration/.cache/linux-image-*-amd64")
	var root string
	for _, r := range roots {
		if _, err := os.Stat(filepath.Join(r, "lib", "modules")); err == nil {
			root = r
		}
	}
	if root == "" {
		t.Skip("no Debian kernel in integration/.cache (scripts/integration.sh fetches it)")
	}
	kernels, _ := filepath.Glob(filepath.Join(root, "boot", "vmlinuz-*"))
	if len(kernels) != 1 {
		t.Skipf("no single vmlinuz in %s", root)
	}
	rel, err := imgbuild.KernelRelease(kernels[0])
	if err != nil || rel == "" {
		t.Fatalf("kernel release of %s: %q %v", kernels[0], rel, err)
	}
	if !strings.HasSuffix(kernels[0], "vmlinuz-"+rel) {
		t.Errorf("bzImage says release %s, package file is %s", rel, kernels[0])
	}
	build, text, info := buildWithModules(t, kernels[0], root)
	tr, err := kmod.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	want, err := tr.Resolve(kmod.DefaultNames())
	if err != nil {
		t.Fatal(err)
	}
	if len(info.KernelModules) != len(want) {
		t.Fatalf("describe lists %d modules, want %d", len(info.KernelModules), len(want))
	}
	for i, m := range info.KernelModules {
		if m.Name != want[i].Name || m.Size <= 0 {
			t.Errorf("module %d: %+v, want %s", i, m, want[i].Name)
		}
	}
	t.Logf("build:\n%s\ndescribe:\n%s", build, text)
}

// TestBuildKernelModulesWrongRelease refuses modules of another kernel
// release than the bzImage's (they would not load: vermagic).
func TestBuildKernelModulesWrongRelease(t *testing.T) {
	dir := t.TempDir()
	writeTestLayout(t, filepath.Join(dir, "layout"))
	// A bzImage setup header: "HdrS" at 0x202, the version string's
	// offset (minus 0x200) at 0x20e.
	k := make([]byte, 0x400)
	copy(k[0x202:], "HdrS")
	binary.LittleEndian.PutUint16(k[0x20e:], 0x100)
	copy(k[0x300:], "9.9.9-other (builder@host) #1 SMP\x00")
	for name, body := range map[string][]byte{"bzImage": k, "nbd-enclave": []byte("\x7fELF stand-in")} {
		if err := os.WriteFile(filepath.Join(dir, name), body, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if rel, err := imgbuild.KernelRelease(filepath.Join(dir, "bzImage")); rel != "9.9.9-other" || err != nil {
		t.Fatalf("KernelRelease: %q %v", rel, err)
	}
	env, out, errb := testEnv()
	rc := run(context.Background(), env, []string{"build", "--in", "oci:" + dir + "/layout:app", "--out", dir + "/out",
		"--kernel", dir + "/bzImage", "--init", dir + "/nbd-enclave", "--kernel-modules", "../../kmod/testdata/tree", "--progress", "plain"})
	if rc == 0 || !strings.Contains(errb.String(), "are for 5.10.0-test") {
		t.Errorf("rc %d, want a release mismatch error:\n%s%s", rc, out, errb)
	}
}
