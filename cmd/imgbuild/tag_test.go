package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/enclave-storage/enclave-storage/imgbuild"
	"github.com/enclave-storage/enclave-storage/imgsrc/ocitest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// staticParent builds cmd/nbd-parent as make build does (no cgo), the
// binary the image must carry.
func staticParent(t *testing.T, dir string) string {
	t.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go not on PATH: cannot build a static nbd-parent")
	}
	out := filepath.Join(dir, "nbd-parent")
	cmd := exec.Command(gobin, "build", "-trimpath", "-o", out, "../nbd-parent")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build nbd-parent: %v\n%s", err, b)
	}
	return out
}

// tagInputs writes the test layout, a stand-in kernel and init in dir and
// returns the build flags using them.
func tagInputs(t *testing.T, dir string) []string {
	t.Helper()
	writeTestLayout(t, filepath.Join(dir, "layout"))
	for name, body := range map[string]string{"bzImage": strings.Repeat("K", 4096), "nbd-enclave": "\x7fELF stand-in"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return []string{"build", "--in", "oci:" + dir + "/layout:app", "--kernel", dir + "/bzImage", "--init", dir + "/nbd-enclave",
		"--source-date-epoch", "1700000000", "--progress", "plain"}
}

func fileSum(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

var digestRE = regexp.MustCompile(`digest:\s+(sha256:[0-9a-f]{64})`)

// TestTagCLI builds twice with --tag into two oci-archives (same digest),
// reads one with skopeo inspect and an oci: layout with umoci unpack
// --rootless: the files with their content, the entrypoint and the labels
// against pcrs.json and rootfs.verity.json.
func TestTagCLI(t *testing.T) {
	dir := t.TempDir()
	parent := staticParent(t, dir)
	base := tagInputs(t, dir)
	var digests []string
	for _, dest := range []string{"oci-archive:" + dir + "/a.tar:app", "oci-archive:" + dir + "/b.tar:app", "oci:" + dir + "/img:app"} {
		env, out, errb := testEnv()
		outDir := filepath.Join(dir, "out"+string(rune('0'+len(digests))))
		if rc := run(context.Background(), env, append(base, "--out", outDir, "--tag", dest, "--parent-bin", parent)); rc != 0 {
			t.Fatalf("%s: rc %d\n%s%s", dest, rc, out, errb)
		}
		m := digestRE.FindStringSubmatch(out.String())
		if m == nil {
			t.Fatalf("no digest in:\n%s", out)
		}
		digests = append(digests, m[1])
	}
	if digests[0] != digests[1] || digests[0] != digests[2] {
		t.Errorf("three builds of the same input gave digests %v", digests)
	}
	out0 := filepath.Join(dir, "out0")
	var pcrs struct{ Measurements map[string]string }
	var man struct {
		Verity struct {
			RootHash string `json:"root_hash"`
		} `json:"verity"`
	}
	for file, v := range map[string]any{"pcrs.json": &pcrs, "rootfs.verity.json": &man} {
		b, err := os.ReadFile(filepath.Join(out0, file))
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, v); err != nil {
			t.Fatal(err)
		}
	}
	wantLabels := map[string]string{
		"org.enclave-storage.pcr0": pcrs.Measurements["PCR0"], "org.enclave-storage.pcr1": pcrs.Measurements["PCR1"],
		"org.enclave-storage.pcr2": pcrs.Measurements["PCR2"], "org.enclave-storage.root-hash": man.Verity.RootHash,
	}
	if len(pcrs.Measurements["PCR0"]) != 96 || len(man.Verity.RootHash) != 64 {
		t.Fatalf("pcrs %v, root hash %q", pcrs, man.Verity.RootHash)
	}

	if skopeo, err := exec.LookPath("skopeo"); err != nil {
		t.Log("skopeo not installed: skipping skopeo inspect")
	} else {
		b, err := exec.Command(skopeo, "inspect", "oci-archive:"+dir+"/a.tar:app").Output()
		if err != nil {
			t.Fatalf("skopeo inspect: %v", err)
		}
		var in struct {
			Digest string
			Labels map[string]string
			Layers []string
		}
		if err := json.Unmarshal(b, &in); err != nil {
			t.Fatal(err)
		}
		if in.Digest != digests[0] || len(in.Layers) != 2 {
			t.Errorf("skopeo inspect: %s", b)
		}
		for k, v := range wantLabels {
			if in.Labels[k] != v {
				t.Errorf("label %s = %q, want %q", k, in.Labels[k], v)
			}
		}
	}

	b, err := ocitest.UmociUnpack(dir+"/img:app", filepath.Join(dir, "bundle"))
	if errors.Is(err, ocitest.ErrNoUmoci) {
		t.Skip(err)
	} else if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{"usr/bin/nbd-parent": parent}
	for _, f := range []string{"enclave.eif", "rootfs.img", "rootfs.verity.json", "pcrs.json", "kms-key-policy.json"} {
		files["enclave/"+f] = filepath.Join(dir, "out2", f)
	}
	for in, src := range files {
		if fileSum(t, filepath.Join(b.Root, in)) != fileSum(t, src) {
			t.Errorf("/%s differs from %s", in, src)
		}
	}
	if st, err := os.Stat(filepath.Join(b.Root, "usr/bin/nbd-parent")); err != nil || st.Mode().Perm() != 0o755 {
		t.Errorf("nbd-parent not executable: %v", err)
	}
	if st, err := os.Stat(filepath.Join(b.Root, "var/lib/enclave")); err != nil || !st.IsDir() {
		t.Errorf("/var/lib/enclave: %v", err)
	}
	if !slices.Equal(b.Args, imgbuild.ImageEntrypoint(imgbuild.DefaultRunSize)) || b.Cwd != "/enclave" {
		t.Errorf("process %q in %s", b.Args, b.Cwd)
	}
	for k, v := range wantLabels {
		if b.Annotations[k] != v {
			t.Errorf("umoci annotation %s = %q, want %q", k, b.Annotations[k], v)
		}
	}
}

func TestTagUsage(t *testing.T) {
	dir := t.TempDir()
	base := tagInputs(t, dir)
	notELF := filepath.Join(dir, "nbd-parent.sh")
	if err := os.WriteFile(notELF, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		args []string
		rc   int
		want string
	}{
		{[]string{"--in", "x", "--tag", "oci:" + dir + "/i"}, 2, "--tag needs --kernel"},
		{append(slices.Clone(base), "--out", dir+"/o1", "--tag", "app:latest", "--parent-bin", notELF), 1, "not a statically linked"},
		{append(slices.Clone(base), "--out", dir+"/o2", "--tag", "oci:"+dir+"/i", "--parent-bin", dir+"/missing"), 1, "no such file"},
	}
	// ldd is the oracle saying /bin/ls needs a dynamic loader.
	if out, err := exec.Command("ldd", "/bin/ls").Output(); err == nil && strings.Contains(string(out), "ld-linux") {
		cases = append(cases, struct {
			args []string
			rc   int
			want string
		}{append(slices.Clone(base), "--out", dir+"/o3", "--tag", "oci:"+dir+"/i", "--parent-bin", "/bin/ls"), 1, "dynamic loader"})
	}
	for _, tc := range cases {
		env, out, errb := testEnv()
		if rc := run(context.Background(), env, tc.args); rc != tc.rc || !strings.Contains(out.String()+errb.String(), tc.want) {
			t.Errorf("%q: rc %d, want %d with %q in:\n%s%s", tc.args, rc, tc.rc, tc.want, out, errb)
		}
	}
}

// TestTagBase builds with --base: umoci finds the base's nitro-cli next
// to nbd-parent and the enclave's files, the label names the base's
// manifest digest, and the PATH the base sets is the image's.
func TestTagBase(t *testing.T) {
	dir := t.TempDir()
	parent := staticParent(t, dir)
	args := tagInputs(t, dir)
	cli := ocitest.File("usr/bin/nitro-cli", "#!/bin/sh\necho nitro-cli\n")
	cli.Mode = 0o755
	layer, err := ocitest.Tar(ocitest.Dir("usr/"), ocitest.Dir("usr/bin/"), cli)
	if err != nil {
		t.Fatal(err)
	}
	m, err := ocitest.WriteLayout(dir+"/base", "cli", ocitest.Image{Layers: [][]byte{layer}, Compression: ocitest.Gzip, Created: ocitest.T0(),
		Config: v1.ImageConfig{Env: []string{"PATH=/usr/sbin:/usr/bin"}}})
	if err != nil {
		t.Fatal(err)
	}
	env, out, errb := testEnv()
	if rc := run(context.Background(), env, append(args, "--out", dir+"/out", "--tag", "oci:"+dir+"/img:app", "--parent-bin", parent,
		"--base", "oci:"+dir+"/base:cli")); rc != 0 {
		t.Fatalf("rc %d\n%s%s", rc, out, errb)
	}
	b, err := ocitest.UmociUnpack(dir+"/img:app", filepath.Join(dir, "bundle"))
	if errors.Is(err, ocitest.ErrNoUmoci) {
		t.Skip(err)
	} else if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"usr/bin/nitro-cli", "usr/bin/nbd-parent", "enclave/enclave.eif"} {
		if _, err := os.Stat(filepath.Join(b.Root, f)); err != nil {
			t.Errorf("unpacked image: %v", err)
		}
	}
	if got := b.Annotations["org.enclave-storage.base"]; got != string(m.Digest) {
		t.Errorf("base label %q, want the base manifest's digest %s", got, m.Digest)
	}
	cfg, err := os.ReadFile(filepath.Join(dir, "bundle", "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(cfg), `"PATH=/usr/sbin:/usr/bin"`) {
		t.Errorf("the base's PATH is not the process's:\n%s", cfg)
	}
}
