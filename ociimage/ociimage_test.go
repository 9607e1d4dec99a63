package ociimage_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/enclave-storage/enclave-storage/imgsrc/ocitest"
	"github.com/enclave-storage/enclave-storage/ociimage"
)

// fixture writes the spec's source files in dir: a 1 MiB file (bigger
// than any tar buffer), a small one and an executable.
func fixture(t *testing.T, dir, body string) *ociimage.Spec {
	t.Helper()
	files := map[string]string{
		"big":  strings.Repeat("0123456789abcdef", 1<<16),
		"conf": body,
		"tool": "#!/bin/sh\necho tool\n",
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(b), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return &ociimage.Spec{
		Layers: [][]ociimage.File{
			{{Path: "/usr/bin/tool", Source: filepath.Join(dir, "tool"), Mode: 0o755}},
			// Given out of order: the tar is sorted.
			{{Path: "/data/z/conf", Source: filepath.Join(dir, "conf")}, {Path: "/data/big", Source: filepath.Join(dir, "big")}},
		},
		Dirs:       []string{"/var/lib/state"},
		Entrypoint: []string{"/usr/bin/tool", "--flag"},
		Labels:     map[string]string{"org.example.a": "1", "org.example.b": "2"},
		Volumes:    []string{"/var/lib/state"},
		Created:    time.Date(2025, 6, 7, 8, 9, 10, 0, time.UTC),
	}
}

func sum(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// TestReproducible writes the same files, copied to two directories at
// two times, twice to each transport: same digest; one changed byte: a
// new digest.
func TestReproducible(t *testing.T) {
	for _, tc := range []struct{ name, dest string }{
		{"oci", "oci:%s/layout:app"},
		{"oci-archive", "oci-archive:%s/app.tar:app"},
		{"docker-archive", "docker-archive:%s/app.tar:app:v1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var digests []string
			for _, body := range []string{"v1", "v1", "v2"} {
				src, out := t.TempDir(), t.TempDir()
				spec := fixture(t, src, body)
				if err := os.Chtimes(filepath.Join(src, "conf"), time.Now(), time.Now().Add(-time.Duration(len(digests))*time.Hour)); err != nil {
					t.Fatal(err)
				}
				r, err := ociimage.Write(context.Background(), strings.ReplaceAll(tc.dest, "%s", out), spec, nil)
				if err != nil {
					t.Fatal(err)
				}
				if len(r.Layers) != 2 || r.ConfigDigest == "" {
					t.Fatalf("result %+v", r)
				}
				digests = append(digests, string(r.Digest))
			}
			if digests[0] != digests[1] {
				t.Errorf("two writes of the same files: %s and %s", digests[0], digests[1])
			}
			if digests[2] == digests[0] {
				t.Errorf("a changed file left the digest at %s", digests[0])
			}
		})
	}
}

// TestSkopeoInspect reads oci-archive and docker-archive outputs with
// skopeo: labels, layers, entrypoint, volume, creation time.
func TestSkopeoInspect(t *testing.T) {
	skopeo, err := exec.LookPath("skopeo")
	if err != nil {
		t.Skip("skopeo not installed")
	}
	dir := t.TempDir()
	spec := fixture(t, dir, "v1")
	for _, dest := range []string{"oci-archive:" + dir + "/o.tar", "docker-archive:" + dir + "/d.tar"} {
		r, err := ociimage.Write(context.Background(), dest, spec, nil)
		if err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(skopeo, "inspect", dest).Output()
		if err != nil {
			t.Fatalf("skopeo inspect %s: %v", dest, err)
		}
		var in struct {
			Digest  string
			Created time.Time
			Labels  map[string]string
			Layers  []string
			Os      string
			Arch    string `json:"Architecture"`
		}
		if err := json.Unmarshal(out, &in); err != nil {
			t.Fatal(err)
		}
		var layers []string
		for _, l := range r.Layers {
			layers = append(layers, string(l.Digest))
		}
		if !slices.Equal(in.Layers, layers) || in.Labels["org.example.a"] != "1" || in.Labels["org.example.b"] != "2" ||
			!in.Created.Equal(spec.Created) || in.Os != "linux" || in.Arch != "amd64" {
			t.Errorf("%s: skopeo inspect %s\nwant layers %v", dest, out, layers)
		}
		if strings.HasPrefix(dest, "oci-archive:") && in.Digest != string(r.Digest) {
			t.Errorf("%s: skopeo digest %s, Write said %s", dest, in.Digest, r.Digest)
		}
		out, err = exec.Command(skopeo, "inspect", "--config", dest).Output()
		if err != nil {
			t.Fatalf("skopeo inspect --config %s: %v", dest, err)
		}
		var cfg struct {
			Config struct {
				Entrypoint []string
				Volumes    map[string]struct{}
			} `json:"config"`
		}
		if err := json.Unmarshal(out, &cfg); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(cfg.Config.Entrypoint, spec.Entrypoint) || len(cfg.Config.Volumes) != 1 {
			t.Errorf("%s: config %s", dest, out)
		}
	}
}

// TestUmociUnpack unpacks an oci: output with umoci, rootless: every file
// with its content and mode, the directories, and the runtime config's
// process and labels.
func TestUmociUnpack(t *testing.T) {
	dir := t.TempDir()
	spec := fixture(t, dir, "v1")
	if _, err := ociimage.Write(context.Background(), "oci:"+dir+"/layout:app", spec, nil); err != nil {
		t.Fatal(err)
	}
	b, err := ocitest.UmociUnpack(dir+"/layout:app", filepath.Join(dir, "bundle"))
	if errors.Is(err, ocitest.ErrNoUmoci) {
		t.Skip(err)
	} else if err != nil {
		t.Fatal(err)
	}
	for _, layer := range spec.Layers {
		for _, f := range layer {
			got := filepath.Join(b.Root, f.Path)
			if sum(t, got) != sum(t, f.Source) {
				t.Errorf("%s: content differs from %s", f.Path, f.Source)
			}
			want := f.Mode
			if want == 0 {
				want = 0o644
			}
			if st, err := os.Stat(got); err != nil || st.Mode().Perm() != want || !st.ModTime().Equal(spec.Created) {
				t.Errorf("%s: %v, %v; want mode %v, mtime %v", f.Path, st.Mode(), err, want, spec.Created)
			}
		}
	}
	if st, err := os.Stat(filepath.Join(b.Root, "var/lib/state")); err != nil || !st.IsDir() {
		t.Errorf("volume directory: %v", err)
	}
	if !slices.Equal(b.Args, spec.Entrypoint) || b.Annotations["org.example.a"] != "1" {
		t.Errorf("runtime config: args %q annotations %v", b.Args, b.Annotations)
	}
}

func TestWriteErrors(t *testing.T) {
	dir := t.TempDir()
	ok := fixture(t, dir, "v1")
	for _, tc := range []struct {
		name string
		dest string
		mod  func(*ociimage.Spec)
		want error
		text string
	}{
		{"bare name", "app:latest", nil, ociimage.ErrNoTransport, ""},
		{"repeated path", "oci:" + dir + "/l", func(s *ociimage.Spec) { s.Layers[1] = append(s.Layers[1], s.Layers[1][0]) }, nil, "repeated"},
		{"root path", "oci:" + dir + "/l", func(s *ociimage.Spec) { s.Layers[0][0].Path = "/" }, nil, "bad"},
		{"directory source", "oci:" + dir + "/l", func(s *ociimage.Spec) { s.Layers[0][0].Source = dir }, nil, "not a regular file"},
		{"missing source", "oci:" + dir + "/l", func(s *ociimage.Spec) { s.Layers[0][0].Source = dir + "/nope" }, os.ErrNotExist, ""},
		{"platform", "oci:" + dir + "/l", func(s *ociimage.Spec) { s.Platform = "amd64" }, nil, "os/arch"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := *ok
			spec.Layers = [][]ociimage.File{slices.Clone(ok.Layers[0]), slices.Clone(ok.Layers[1])}
			if tc.mod != nil {
				tc.mod(&spec)
			}
			_, err := ociimage.Write(context.Background(), tc.dest, &spec, nil)
			if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) || !strings.Contains(err.Error(), tc.text) {
				t.Errorf("err = %v, want %v %q", err, tc.want, tc.text)
			}
		})
	}
}
