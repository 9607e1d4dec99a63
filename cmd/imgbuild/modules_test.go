package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/enclave-storage/enclave-storage/cpio"
	"github.com/enclave-storage/enclave-storage/eif"
	"github.com/enclave-storage/enclave-storage/imgbuild"
	"github.com/enclave-storage/enclave-storage/kmod"
)

// buildWithModules runs "imgbuild build --kernel-modules" and returns the
// build output and "describe" and "describe --json" of the EIF.
func buildWithModules(t *testing.T, kernel, modules string, extra ...string) (build, text string, info describeInfo, eifPath string) {
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
	return build, text, info, dir + "/out/enclave.eif"
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
	build, text, info, _ := buildWithModules(t, kernel, tree, "--kernel-module-names", names)
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

// debianKernel returns the root and vmlinuz of the Debian kernel package
// integration/.cache holds (scripts/integration.sh fetches it), or skips.
func debianKernel(t *testing.T) (root, vmlinuz string) {
	t.Helper()
	kernels, _ := filepath.Glob("../../integration/.cache/linux-image-*-amd64/boot/vmlinuz-*")
	if len(kernels) != 1 {
		t.Skip("no (single) Debian kernel in integration/.cache (scripts/integration.sh fetches it)")
	}
	root = filepath.Dir(filepath.Dir(kernels[0]))
	if _, err := os.Stat(filepath.Join(root, "lib", "modules")); err != nil {
		t.Skipf("no module tree in %s", root)
	}
	return root, kernels[0]
}

// TestBuildKernelModulesDebian builds with Debian's kernel and module tree
// from integration/.cache and checks the EIF carries what modprobe-checked
// resolution gives for the defaults.
func TestBuildKernelModulesDebian(t *testing.T) {
	root, kernel := debianKernel(t)
	rel, err := imgbuild.KernelRelease(kernel)
	if err != nil || rel == "" {
		t.Fatalf("kernel release of %s: %q %v", kernel, rel, err)
	}
	if !strings.HasSuffix(kernel, "vmlinuz-"+rel) {
		t.Errorf("bzImage says release %s, package file is %s", rel, kernel)
	}
	build, text, info, _ := buildWithModules(t, kernel, root)
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

// TestBuildKernelModulesAfterBootstrap gives a bootstrap ramdisk of its
// own (an odd-sized one, as a foreign cpio may be padded) and checks the
// modules' archive follows it, 4-byte aligned, both readable as the
// kernel reads concatenated archives.
func TestBuildKernelModulesAfterBootstrap(t *testing.T) {
	dir := t.TempDir()
	var boot bytes.Buffer
	ar := cpio.Archive{}
	if err := ar.AddFile("nsm.ko", 0o444, []byte("\x7fELF stand-in nsm")); err != nil {
		t.Fatal(err)
	}
	if _, err := ar.WriteTo(&boot); err != nil {
		t.Fatal(err)
	}
	boot.Write([]byte{0, 0}) // trailing NULs, not a multiple of 4
	bootPath, kernel := filepath.Join(dir, "bootstrap.cpio"), filepath.Join(dir, "bzImage")
	if err := os.WriteFile(bootPath, boot.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(kernel, []byte(strings.Repeat("K", 4096)), 0o644); err != nil {
		t.Fatal(err)
	}
	_, text, info, eifPath := buildWithModules(t, kernel, "../../kmod/testdata/tree", "--kernel-module-names", "nbd", "--bootstrap", bootPath)
	if len(info.KernelModules) != 1 || info.KernelModules[0].Name != "nbd" || info.KernelModules[0].Size <= 0 {
		t.Fatalf("modules %+v, want nbd:\n%s", info.KernelModules, text)
	}
	// The first ramdisk starts with the given bootstrap, byte for byte,
	// and still holds its nsm.ko.
	b, err := os.ReadFile(eifPath)
	if err != nil {
		t.Fatal(err)
	}
	f, err := eif.Read(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	var first []byte
	var names []string
	for i, s := range f.Sections {
		if s.Type != eif.SectionRamdisk {
			continue
		}
		first = make([]byte, s.Size)
		if _, err := f.Open(i).ReadAt(first, 0); err != nil {
			t.Fatal(err)
		}
		r := cpio.NewReader(bytes.NewReader(first))
		for {
			h, err := r.Next()
			if err != nil {
				break
			}
			names = append(names, h.Name)
		}
		break
	}
	if !bytes.HasPrefix(first, boot.Bytes()) || !slices.Contains(names, "nsm.ko") || !slices.Contains(names, kmod.OrderPath) {
		t.Errorf("bootstrap ramdisk does not start with the given one or lacks nsm.ko / the order file: %v", names)
	}
}
