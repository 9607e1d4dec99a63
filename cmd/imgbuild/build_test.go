package main

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/enclave-storage/enclave-storage/imgsrc/ocitest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// writeTestLayout writes a two-layer OCI layout (tag "app") in dir.
func writeTestLayout(t *testing.T, dir string) {
	t.Helper()
	l1, err := ocitest.Tar(ocitest.Dir("etc"), ocitest.File("etc/os-release", "ID=test\n"), ocitest.File("etc/junk", "x"))
	if err != nil {
		t.Fatal(err)
	}
	l2, err := ocitest.Tar(ocitest.Whiteout("etc", "junk"), ocitest.File("app", "#!/bin/sh\necho hello\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ocitest.WriteLayout(dir, "app", ocitest.Image{
		Layers:      [][]byte{l1, l2},
		Compression: ocitest.Gzip,
		Config:      v1.ImageConfig{Entrypoint: []string{"/app"}},
	}); err != nil {
		t.Fatal(err)
	}
}

// TestBuildArchives runs "imgbuild --in oci-archive:..." and
// "--in docker-archive:..." end to end on archives that skopeo made from
// the same layout, and checks both give the same filesystem and root hash
// (the layers are the same; only the manifests differ, so the salt is
// fixed here).
func TestBuildArchives(t *testing.T) {
	skopeo, err := exec.LookPath("skopeo")
	if err != nil {
		t.Skip("skopeo not installed: cannot make oci-archive/docker-archive fixtures")
	}
	dir := t.TempDir()
	writeTestLayout(t, filepath.Join(dir, "layout"))
	refs := []string{"oci-archive:" + dir + "/app-oci.tar:app", "docker-archive:" + dir + "/app-docker.tar:app:latest"}
	for _, dst := range refs {
		if out, err := exec.Command(skopeo, "--insecure-policy", "copy", "-q", "oci:"+dir+"/layout:app", dst).CombinedOutput(); err != nil {
			t.Fatalf("skopeo copy %s: %v\n%s", dst, err, out)
		}
	}
	rootRE := regexp.MustCompile(`root hash:\s+([0-9a-f]{64})`)
	var roots []string
	var images [][]byte
	for i, ref := range append(refs, "oci:"+dir+"/layout:app") {
		outDir := filepath.Join(dir, "out", strings.Split(ref, ":")[0])
		env, out, errb := testEnv()
		rc := run(context.Background(), env, []string{"--in", ref, "--out", outDir, "--salt", "00ff", "--source-date-epoch", "1700000000", "--progress", "plain"})
		if rc != 0 {
			t.Fatalf("%s: rc %d\n%s%s", ref, rc, out, errb)
		}
		m := rootRE.FindStringSubmatch(out.String())
		if m == nil {
			t.Fatalf("%s: no root hash in output:\n%s", ref, out)
		}
		roots = append(roots, m[1])
		img, err := os.ReadFile(filepath.Join(outDir, "rootfs.img"))
		if err != nil {
			t.Fatal(err)
		}
		images = append(images, img)
		var man struct {
			FSSize int64 `json:"fs_size"`
			Verity struct {
				RootHash string `json:"root_hash"`
			} `json:"verity"`
			App struct {
				Entrypoint []string `json:"entrypoint"`
			} `json:"app"`
			SourceDateEpoch int64 `json:"source_date_epoch"`
		}
		b, err := os.ReadFile(filepath.Join(outDir, "rootfs.verity.json"))
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, &man); err != nil {
			t.Fatal(err)
		}
		if man.Verity.RootHash != m[1] || man.SourceDateEpoch != 1700000000 || len(man.App.Entrypoint) != 1 || man.FSSize >= int64(len(img)) {
			t.Errorf("%s: manifest %+v", ref, man)
		}
		if i > 0 && (roots[i] != roots[0] || !bytes.Equal(images[i], images[0])) {
			t.Errorf("%s: root hash %s, %s gave %s", ref, roots[i], refs[0], roots[0])
		}
	}
}

// TestBuildEIFCLI builds with a stand-in kernel and init, then reads the
// EIF back with "imgbuild describe".
func TestBuildEIFCLI(t *testing.T) {
	dir := t.TempDir()
	writeTestLayout(t, filepath.Join(dir, "layout"))
	for name, body := range map[string]string{"bzImage": strings.Repeat("K", 4096), "nbd-enclave": "\x7fELF stand-in"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	env, out, errb := testEnv()
	rc := run(context.Background(), env, []string{"build", "--in", "oci:" + dir + "/layout:app", "--out", dir + "/out",
		"--kernel", dir + "/bzImage", "--init", dir + "/nbd-enclave", "--progress", "plain"})
	if rc != 0 {
		t.Fatalf("rc %d\n%s%s", rc, out, errb)
	}
	pcr0 := regexp.MustCompile(`PCR0:\s+([0-9a-f]{96})`).FindStringSubmatch(out.String())
	if pcr0 == nil {
		t.Fatalf("no PCR0 in:\n%s", out)
	}
	env, out, errb = testEnv()
	if rc := run(context.Background(), env, []string{"describe", dir + "/out/enclave.eif"}); rc != 0 {
		t.Fatalf("describe: rc %d\n%s", rc, errb)
	}
	if !strings.Contains(out.String(), pcr0[1]) || !strings.Contains(out.String(), "enclave_storage.verity_root=") {
		t.Errorf("describe output lacks PCR0 %s or the pinned root:\n%s", pcr0[1], out)
	}
}

func TestBuildUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		rc   int
		want string
	}{
		{[]string{"build", "--help"}, 0, "-source-date-epoch"},
		{[]string{"build"}, 2, "--in is required"},
		{[]string{"--in", "x", "--kernel", "k"}, 2, "--init"},
		{[]string{"--in", "x", "--salt", "zz"}, 2, "not hex"},
		{[]string{"--in", "x", "--source-date-epoch", "yesterday"}, 2, "Unix seconds"},
		{[]string{"--in", "x", "--progress", "fancy"}, 2, "auto or plain"},
		{[]string{"--in", "x", "--max-size", "lots"}, 2, "positive size"},
		{[]string{"--in", "x", "--max-file-size", "-1"}, 2, "positive size"},
		{[]string{"--in", "x", "--max-entries", "0"}, 2, "positive number"},
		{[]string{"--in", "oci:/nonexistent/layout:app", "--out", "OUT"}, 1, "/nonexistent/layout"},
	} {
		env, out, errb := testEnv()
		args := tc.args
		for i, a := range args {
			if a == "OUT" {
				args[i] = t.TempDir()
			}
		}
		if rc := run(context.Background(), env, args); rc != tc.rc || !strings.Contains(out.String()+errb.String(), tc.want) {
			t.Errorf("%q: rc %d, want %d with %q in:\n%s%s", tc.args, rc, tc.rc, tc.want, out, errb)
		}
	}
}

func TestByteSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
	}{
		{"1024", 1024}, {"64K", 64 << 10}, {"64KiB", 64 << 10}, {"3MB", 3 << 20}, {"64G", 64 << 30}, {"2T", 2 << 40},
		{"0", -1}, {"-5", -1}, {"G", -1}, {"1.5G", -1}, {"9000000T", -1}, {"", -1},
	} {
		var b byteSize
		err := b.Set(tc.in)
		if tc.want < 0 {
			if err == nil {
				t.Errorf("Set(%q) = %d, want an error", tc.in, b)
			}
			continue
		}
		if err != nil || int64(b) != tc.want {
			t.Errorf("Set(%q) = %d, %v; want %d", tc.in, b, err, tc.want)
		}
	}
}

// TestBuildLimits builds a gzip bomb (8 MiB of zeroes in a few KiB of
// layer) and an image with a device node through the command line: the
// limit flag stops the bomb at its header, naming the layer and the
// limit, and the device node is dropped unless --keep-devices.
func TestBuildLimits(t *testing.T) {
	dir := t.TempDir()
	bomb, err := ocitest.Tar(ocitest.File("zeroes", strings.Repeat("\x00", 8<<20)))
	if err != nil {
		t.Fatal(err)
	}
	withDev := ocitest.File("app", "x")
	dev := ocitest.Entry{Header: tar.Header{Typeflag: tar.TypeBlock, Name: "dev/nbd1", Mode: 0o666, Devmajor: 43, Devminor: 32, ModTime: ocitest.T0()}}
	devs, err := ocitest.Tar(withDev, dev)
	if err != nil {
		t.Fatal(err)
	}
	for name, l := range map[string][]byte{"bomb": bomb, "devs": devs} {
		if _, err := ocitest.WriteLayout(filepath.Join(dir, name), "app", ocitest.Image{Layers: [][]byte{l}, Compression: ocitest.Gzip}); err != nil {
			t.Fatal(err)
		}
	}
	env, out, errb := testEnv()
	rc := run(context.Background(), env, []string{"build", "--in", "oci:" + dir + "/bomb:app", "--out", dir + "/out", "--max-size", "1M", "--progress", "plain"})
	if rc != 1 || !strings.Contains(errb.String(), "max-size limit 1048576 exceeded") || !strings.Contains(errb.String(), `entry "zeroes"`) {
		t.Errorf("bomb: rc %d, want 1 and an error naming the limit and entry:\n%s%s", rc, out, errb)
	}
	if !strings.Contains(errb.String(), "layer sha256:") {
		t.Errorf("bomb: error does not name the layer:\n%s", errb)
	}
	if _, err := os.Stat(filepath.Join(dir, "out", "rootfs.img")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("bomb: rootfs.img written (%v)", err)
	}
	for _, keep := range []bool{false, true} {
		env, out, errb := testEnv()
		env.log = slog.New(slog.NewTextHandler(errb, nil))
		args := []string{"build", "--in", "oci:" + dir + "/devs:app", "--out", dir + "/out-devs", "--progress", "plain"}
		if keep {
			args = append(args, "--keep-devices")
		}
		if rc := run(context.Background(), env, args); rc != 0 {
			t.Fatalf("keep=%v: rc %d\n%s%s", keep, rc, out, errb)
		}
		dropped := strings.Contains(errb.String(), "dropped 1 device nodes")
		if dropped == keep {
			t.Errorf("keep=%v: log says dropped=%v:\n%s", keep, dropped, errb)
		}
	}
}
