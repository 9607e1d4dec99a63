package ociimage_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/enclave-storage/enclave-storage/imgsrc"
	"github.com/enclave-storage/enclave-storage/imgsrc/ocitest"
	"github.com/enclave-storage/enclave-storage/ociimage"
	digest "github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// writeBase writes a base image standing in for one with nitro-cli
// installed: a gzip layer with /usr/bin/nitro-cli and /etc/os-release,
// an Env with PATH and FOO, labels, an entrypoint that must not survive.
func writeBase(t *testing.T, c ocitest.Compression, arch string) (*imgsrc.Image, v1.Descriptor) {
	t.Helper()
	cli := ocitest.File("usr/bin/nitro-cli", "#!/bin/sh\necho nitro-cli \"$@\"\n")
	cli.Mode = 0o755
	layer, err := ocitest.Tar(ocitest.Dir("usr/"), ocitest.Dir("usr/bin/"), cli, ocitest.Dir("etc/"), ocitest.File("etc/os-release", "ID=base\n"))
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "base")
	m, err := ocitest.WriteLayout(dir, "base", ocitest.Image{
		Layers: [][]byte{layer}, Compression: c, Created: ocitest.T0(), Arch: arch,
		Config: v1.ImageConfig{
			Env:        []string{"PATH=/usr/local/bin:/usr/bin:/bin", "FOO=base"},
			Labels:     map[string]string{"org.example.a": "base", "org.example.c": "base"},
			Entrypoint: []string{"/bin/base-entrypoint"}, User: "1000", WorkingDir: "/base",
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	img, err := imgsrc.Open(context.Background(), "oci:"+dir+":base", imgsrc.Options{Platform: "linux/" + arch})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { img.Close() })
	return img, m
}

// TestBase writes an image on a base and reads it back with skopeo and
// umoci: the base layer first and unchanged (same digest), the base's
// files and environment under ours, our entrypoint and user, labels
// merged, the same digest twice.
func TestBase(t *testing.T) {
	base, _ := writeBase(t, ocitest.Gzip, "amd64")
	baseLayer := base.LayerInfos[0].Digest
	for _, tc := range []struct{ name, dest string }{
		{"oci", "oci:%s/layout:app"},
		{"oci-archive", "oci-archive:%s/app.tar:app"},
		{"docker-archive", "docker-archive:%s/app.tar:app:v1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var digests []digest.Digest
			var dest string
			for range 2 {
				dir := t.TempDir()
				spec := fixture(t, dir, "v1")
				spec.Env = []string{"FOO=ours", "BAR=1"}
				spec.Base = base
				dest = strings.ReplaceAll(tc.dest, "%s", dir)
				r, err := ociimage.Write(context.Background(), dest, spec, nil)
				if err != nil {
					t.Fatal(err)
				}
				if len(r.Layers) != 3 || r.Layers[0].Digest != baseLayer {
					t.Fatalf("layers %+v, want the base's %s then ours", r.Layers, baseLayer)
				}
				digests = append(digests, r.Digest)
			}
			if digests[0] != digests[1] {
				t.Errorf("two writes on the same base: %s and %s", digests[0], digests[1])
			}
			if _, err := exec.LookPath("skopeo"); err != nil {
				t.Skip("skopeo not installed")
			}
			out, err := exec.Command("skopeo", "inspect", "--config", dest).Output()
			if err != nil {
				t.Fatalf("skopeo inspect --config %s: %v", dest, err)
			}
			var cfg v1.Image
			if err := json.Unmarshal(out, &cfg); err != nil {
				t.Fatal(err)
			}
			c := cfg.Config
			wantEnv := []string{"PATH=/usr/local/bin:/usr/bin:/bin", "FOO=ours", "BAR=1"}
			if !slices.Equal(c.Env, wantEnv) || !slices.Equal(c.Entrypoint, []string{"/usr/bin/tool", "--flag"}) ||
				c.User != "" || c.WorkingDir != "/base" ||
				c.Labels["org.example.a"] != "1" || c.Labels["org.example.c"] != "base" {
				t.Errorf("config as skopeo reads it: %+v", c)
			}
			if len(cfg.RootFS.DiffIDs) != 3 || cfg.RootFS.DiffIDs[0] != base.LayerInfos[0].DiffID {
				t.Errorf("diff IDs %v, want the base's %s first", cfg.RootFS.DiffIDs, base.LayerInfos[0].DiffID)
			}
		})
	}
}

// TestBaseUmoci unpacks an image on a base with umoci: the base's
// nitro-cli and our files are in one root filesystem.
func TestBaseUmoci(t *testing.T) {
	base, _ := writeBase(t, ocitest.Gzip, "amd64")
	dir := t.TempDir()
	spec := fixture(t, dir, "v1")
	spec.Base = base
	if _, err := ociimage.Write(context.Background(), "oci:"+dir+"/layout:app", spec, nil); err != nil {
		t.Fatal(err)
	}
	b, err := ocitest.UmociUnpack(dir+"/layout:app", filepath.Join(dir, "bundle"))
	if errors.Is(err, ocitest.ErrNoUmoci) {
		t.Skip("umoci not installed")
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"usr/bin/nitro-cli", "etc/os-release", "usr/bin/tool", "data/big"} {
		if _, err := os.Stat(filepath.Join(b.Root, f)); err != nil {
			t.Errorf("unpacked image: %v", err)
		}
	}
	if !slices.Equal(b.Args, spec.Entrypoint) {
		t.Errorf("process args %q, want %q", b.Args, spec.Entrypoint)
	}
}

// TestBaseRefused: a base of another architecture, a zstd base layer
// into a Docker archive, and a base blob changed on disk are refused, and
// nothing is committed for the last.
func TestBaseRefused(t *testing.T) {
	t.Run("platform", func(t *testing.T) {
		base, _ := writeBase(t, ocitest.Gzip, "arm64")
		dir := t.TempDir()
		spec := fixture(t, dir, "v1")
		spec.Base = base
		_, err := ociimage.Write(context.Background(), "oci:"+dir+"/l:app", spec, nil)
		if err == nil || !strings.Contains(err.Error(), "linux/arm64") {
			t.Errorf("an arm64 base under an amd64 image: %v", err)
		}
	})
	t.Run("zstd-into-docker", func(t *testing.T) {
		base, _ := writeBase(t, ocitest.Zstd, "amd64")
		dir := t.TempDir()
		spec := fixture(t, dir, "v1")
		spec.Base = base
		_, err := ociimage.Write(context.Background(), "docker-archive:"+dir+"/d.tar:app:v1", spec, nil)
		if !errors.Is(err, ociimage.ErrBaseLayer) {
			t.Errorf("a zstd base layer into docker-archive: %v, want ErrBaseLayer", err)
		}
		if _, err := ociimage.Write(context.Background(), "oci:"+dir+"/l:app", spec, nil); err != nil {
			t.Errorf("a zstd base layer into an OCI layout: %v", err)
		}
	})
	t.Run("tampered-blob", func(t *testing.T) {
		base, _ := writeBase(t, ocitest.Gzip, "amd64")
		l := base.LayerInfos[0]
		// The layout's blob, changed in place at the same size.
		ref := strings.TrimSuffix(strings.TrimPrefix(base.Ref, "oci:"), ":base")
		p := filepath.Join(ref, "blobs", "sha256", l.Digest.Encoded())
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		b[len(b)/2] ^= 0xff
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		spec := fixture(t, dir, "v1")
		spec.Base = base
		_, err = ociimage.Write(context.Background(), "oci-archive:"+dir+"/o.tar:app", spec, nil)
		if !errors.Is(err, imgsrc.ErrDigestMismatch) {
			t.Errorf("a changed base blob: %v, want ErrDigestMismatch", err)
		}
		if _, err := os.Stat(dir + "/o.tar"); err == nil {
			t.Error("an archive was committed from a changed base blob")
		}
	})
}
