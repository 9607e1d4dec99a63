package imgsrc_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/enclave-storage/enclave-storage/imgsrc"
	"github.com/enclave-storage/enclave-storage/imgsrc/ocitest"
	digest "github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

func mustTar(t *testing.T, e ...ocitest.Entry) []byte {
	t.Helper()
	b, err := ocitest.Tar(e...)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func testImage(t *testing.T, c ocitest.Compression) ocitest.Image {
	return ocitest.Image{
		Layers: [][]byte{
			mustTar(t, ocitest.Dir("etc/"), ocitest.File("etc/hostname", "base\n")),
			mustTar(t, ocitest.File("app", "#!/bin/sh\necho hi\n")),
		},
		Compression: c,
		Config: v1.ImageConfig{
			Entrypoint: []string{"/app"},
			Cmd:        []string{"--serve"},
			Env:        []string{"PATH=/bin", "A=b"},
			WorkingDir: "/srv",
			User:       "1000:1000",
		},
		Created: time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC),
	}
}

// readAll reads every layer and returns their contents.
func readAll(t *testing.T, im *imgsrc.Image) ([][]byte, error) {
	t.Helper()
	var out [][]byte
	for l, err := range im.Layers(context.Background()) {
		if err != nil {
			return out, err
		}
		b, err := io.ReadAll(l.Tar)
		if err != nil {
			return out, err
		}
		out = append(out, b)
	}
	return out, nil
}

func TestOpenOCILayout(t *testing.T) {
	for _, c := range []struct {
		name string
		c    ocitest.Compression
	}{{"plain", ocitest.Uncompressed}, {"gzip", ocitest.Gzip}, {"zstd", ocitest.Zstd}} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			img := testImage(t, c.c)
			desc, err := ocitest.WriteLayout(dir, "app", img)
			if err != nil {
				t.Fatal(err)
			}
			im, err := imgsrc.Open(context.Background(), "oci:"+dir+":app", imgsrc.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer im.Close()
			if im.Digest != desc.Digest {
				t.Errorf("Digest = %s, want %s", im.Digest, desc.Digest)
			}
			cfg := im.Config
			if !slices.Equal(cfg.Entrypoint, []string{"/app"}) || !slices.Equal(cfg.Cmd, []string{"--serve"}) ||
				!slices.Equal(cfg.Env, []string{"PATH=/bin", "A=b"}) || cfg.WorkingDir != "/srv" || cfg.User != "1000:1000" ||
				!cfg.Created.Equal(img.Created) || cfg.OS != "linux" || cfg.Arch != "amd64" {
				t.Errorf("Config = %+v", cfg)
			}
			got, err := readAll(t, im)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 2 {
				t.Fatalf("read %d layers, want 2", len(got))
			}
			for i := range got {
				if digest.FromBytes(got[i]) != digest.FromBytes(img.Layers[i]) {
					t.Errorf("layer %d: uncompressed content differs", i)
				}
				if im.LayerInfos[i].DiffID != digest.FromBytes(img.Layers[i]) {
					t.Errorf("layer %d: DiffID %s", i, im.LayerInfos[i].DiffID)
				}
			}
		})
	}
}

// TestLayersPartialRead checks that a consumer may stop reading a layer
// early (as a tar reader does at the end-of-archive marker) and still get
// every layer verified.
func TestLayersPartialRead(t *testing.T) {
	dir := t.TempDir()
	if _, err := ocitest.WriteLayout(dir, "app", testImage(t, ocitest.Gzip)); err != nil {
		t.Fatal(err)
	}
	im, err := imgsrc.Open(context.Background(), "oci:"+dir+":app", imgsrc.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer im.Close()
	n := 0
	for l, err := range im.Layers(context.Background()) {
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 10)
		if _, err := io.ReadFull(l.Tar, buf); err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != 2 {
		t.Errorf("got %d layers, want 2", n)
	}
}

func TestCorruptLayer(t *testing.T) {
	for _, tc := range []struct {
		name string
		c    ocitest.Compression
		// lie changes img before it is written; corrupt changes the
		// layout written in dir.
		lie     func(img *ocitest.Image)
		corrupt func(t *testing.T, dir string, img *ocitest.Image)
	}{
		{"blob", ocitest.Uncompressed, nil, func(t *testing.T, dir string, img *ocitest.Image) {
			p := filepath.Join(dir, "blobs", "sha256", digest.FromBytes(img.Layers[0]).Encoded())
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			b[600] ^= 1 // inside the first file's content
			if err := os.WriteFile(p, b, 0o644); err != nil {
				t.Fatal(err)
			}
		}},
		{"diff ID", ocitest.Gzip, func(img *ocitest.Image) {
			// The compressed blob is what the manifest says, but the
			// config promises other uncompressed content.
			img.DiffIDs = []digest.Digest{digest.FromBytes(img.Layers[0]), digest.FromString("something else")}
		}, nil},
		{"diff ID of uncompressed layer", ocitest.Uncompressed, func(img *ocitest.Image) {
			img.DiffIDs = []digest.Digest{digest.FromString("something else"), digest.FromBytes(img.Layers[1])}
		}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			img := testImage(t, tc.c)
			if tc.lie != nil {
				tc.lie(&img)
			}
			if _, err := ocitest.WriteLayout(dir, "app", img); err != nil {
				t.Fatal(err)
			}
			if tc.corrupt != nil {
				tc.corrupt(t, dir, &img)
			}
			im, err := imgsrc.Open(context.Background(), "oci:"+dir+":app", imgsrc.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer im.Close()
			_, err = readAll(t, im)
			if !errors.Is(err, imgsrc.ErrDigestMismatch) {
				t.Fatalf("err = %v, want ErrDigestMismatch", err)
			}
			t.Log(err)
		})
	}
}

func TestPlatformFromIndex(t *testing.T) {
	dir := t.TempDir()
	l, err := ocitest.NewLayout(dir)
	if err != nil {
		t.Fatal(err)
	}
	var descs []v1.Descriptor
	for _, p := range []struct{ arch, variant, body string }{{"amd64", "", "x86"}, {"arm64", "v8", "arm"}} {
		d, err := l.WriteImage(ocitest.Image{Arch: p.arch, Variant: p.variant, Layers: [][]byte{mustTar(t, ocitest.File("arch", p.body))}})
		if err != nil {
			t.Fatal(err)
		}
		descs = append(descs, d)
	}
	idx, err := l.WriteIndex(descs...)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Tag(idx, "multi"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		platform string
		want     v1.Descriptor
		wantErr  bool
	}{
		{"", descs[0], false},
		{"linux/amd64", descs[0], false},
		{"linux/arm64/v8", descs[1], false},
		{"linux/s390x", v1.Descriptor{}, true},
		{"linux", v1.Descriptor{}, true},
	} {
		im, err := imgsrc.Open(context.Background(), "oci:"+dir+":multi", imgsrc.Options{Platform: tc.platform})
		if tc.wantErr {
			if err == nil {
				im.Close()
				t.Errorf("platform %q: no error", tc.platform)
			}
			continue
		}
		if err != nil {
			t.Errorf("platform %q: %v", tc.platform, err)
			continue
		}
		if im.Digest != tc.want.Digest {
			t.Errorf("platform %q: digest %s, want %s", tc.platform, im.Digest, tc.want.Digest)
		}
		im.Close()
	}
}

func TestParseReference(t *testing.T) {
	for _, tc := range []struct {
		ref     string
		want    []string
		wantErr bool
	}{
		{"app:latest", []string{"docker-daemon:app:latest", "docker://app:latest"}, false},
		{"app", []string{"docker-daemon:app:latest", "docker://app:latest"}, false},
		{"localhost:5000/team/app:1", []string{"docker-daemon:localhost:5000/team/app:1", "docker://localhost:5000/team/app:1"}, false},
		{"docker://registry.example.com/a/b:c", []string{"docker://registry.example.com/a/b:c"}, false},
		{"oci:/tmp/layout:tag", []string{"oci:/tmp/layout:tag"}, false},
		{"oci-archive:/tmp/a.tar", []string{"oci-archive:/tmp/a.tar:"}, false},
		{"docker-archive:/tmp/a.tar", []string{"docker-archive:/tmp/a.tar"}, false},
		{"docker-daemon:app:1", []string{"docker-daemon:app:1"}, false},
		{"Bad Name", nil, true},
		{"docker:no-slashes", nil, true},
	} {
		refs, err := imgsrc.ParseReference(tc.ref)
		if tc.wantErr {
			if err == nil {
				t.Errorf("%q: no error", tc.ref)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tc.ref, err)
			continue
		}
		var got []string
		for _, r := range refs {
			got = append(got, r.Transport().Name()+":"+r.StringWithinTransport())
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%q: got %q, want %q", tc.ref, got, tc.want)
		}
	}
}

func TestOpenMissing(t *testing.T) {
	_, err := imgsrc.Open(context.Background(), "oci:"+t.TempDir()+":nope", imgsrc.Options{})
	if err == nil {
		t.Fatal("no error")
	}
	t.Log(err)
}

// TestArchivesWithSkopeo converts a layout to oci-archive and
// docker-archive with skopeo (the oracle) and reads both back.
func TestArchivesWithSkopeo(t *testing.T) {
	skopeo, err := exec.LookPath("skopeo")
	if err != nil {
		t.Skip("skopeo not installed: cannot build archive fixtures")
	}
	dir := t.TempDir()
	img := testImage(t, ocitest.Gzip)
	if _, err := ocitest.WriteLayout(filepath.Join(dir, "layout"), "app", img); err != nil {
		t.Fatal(err)
	}
	for _, dst := range []string{"oci-archive:" + dir + "/oci.tar:app", "docker-archive:" + dir + "/docker.tar:app:latest"} {
		cmd := exec.Command(skopeo, "--insecure-policy", "copy", "-q", "oci:"+dir+"/layout:app", dst)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("skopeo copy to %s: %v\n%s", dst, err, out)
		}
		im, err := imgsrc.Open(context.Background(), dst, imgsrc.Options{})
		if err != nil {
			t.Fatal(err)
		}
		got, err := readAll(t, im)
		im.Close()
		if err != nil {
			t.Fatalf("%s: %v", dst, err)
		}
		if len(got) != 2 || digest.FromBytes(got[1]) != digest.FromBytes(img.Layers[1]) {
			t.Errorf("%s: layers differ", dst)
		}
		if !slices.Equal(im.Config.Entrypoint, []string{"/app"}) {
			t.Errorf("%s: entrypoint %q", dst, im.Config.Entrypoint)
		}
	}
}

// TestBareReferenceFallback opens a bare name with neither a docker
// daemon nor a registry reachable (a closed local port): the error must
// say both were tried.
func TestBareReferenceFallback(t *testing.T) {
	t.Setenv("DOCKER_HOST", "unix://"+filepath.Join(t.TempDir(), "no-docker.sock"))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := imgsrc.Open(ctx, "127.0.0.1:1/app:latest", imgsrc.Options{})
	if err == nil {
		t.Fatal("no error")
	}
	t.Log(err)
	for _, want := range []string{"docker-daemon:127.0.0.1:1/app:latest", "docker://127.0.0.1:1/app:latest"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
}

// TestPlatformMismatch opens a single-platform arm64 image: the default
// (amd64) must refuse it, naming both platforms, and --platform
// linux/arm64 must accept it.
func TestPlatformMismatch(t *testing.T) {
	dir := t.TempDir()
	if _, err := ocitest.WriteLayout(dir, "arm", ocitest.Image{Arch: "arm64", Layers: [][]byte{mustTar(t, ocitest.File("a", "a"))}}); err != nil {
		t.Fatal(err)
	}
	_, err := imgsrc.Open(context.Background(), "oci:"+dir+":arm", imgsrc.Options{})
	if err == nil || !strings.Contains(err.Error(), "linux/arm64") || !strings.Contains(err.Error(), "linux/amd64") {
		t.Fatalf("err = %v, want a platform mismatch", err)
	}
	im, err := imgsrc.Open(context.Background(), "oci:"+dir+":arm", imgsrc.Options{Platform: "linux/arm64"})
	if err != nil {
		t.Fatal(err)
	}
	im.Close()
}

// TestLayersBigAndCancelled reads layers of several read-ahead chunks
// through every compression: whole, they match what was written; a loop
// left after a few bytes of the first ends cleanly; a context cancelled
// in the middle of a layer ends the iteration with its error.
func TestLayersBigAndCancelled(t *testing.T) {
	big := make([]byte, 5<<20+123)
	for i := range big {
		big[i] = byte(i * 7 / 5) // compresses, but not to nothing
	}
	for _, c := range []ocitest.Compression{ocitest.Uncompressed, ocitest.Gzip, ocitest.Zstd} {
		t.Run(fmt.Sprint(c), func(t *testing.T) {
			img := testImage(t, c)
			img.Layers[0] = mustTar(t, ocitest.File("big", string(big)), ocitest.File("small", "x"))
			dir := t.TempDir()
			if _, err := ocitest.WriteLayout(dir, "app", img); err != nil {
				t.Fatal(err)
			}
			im, err := imgsrc.Open(context.Background(), "oci:"+dir+":app", imgsrc.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer im.Close()

			got, err := readAll(t, im)
			if err != nil || len(got) != 2 || !bytes.Equal(got[0], img.Layers[0]) || !bytes.Equal(got[1], img.Layers[1]) {
				t.Fatalf("whole read: %d layers, err %v", len(got), err)
			}

			for l, err := range im.Layers(context.Background()) {
				if err != nil {
					t.Fatal(err)
				}
				if _, err := io.ReadFull(l.Tar, make([]byte, 100)); err != nil {
					t.Fatal(err)
				}
				break
			}

			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var last error
			for l, err := range im.Layers(ctx) {
				if err != nil {
					last = err
					break
				}
				if _, err := io.ReadFull(l.Tar, make([]byte, 2<<20)); err != nil {
					t.Fatal(err)
				}
				cancel()
				if _, err := io.Copy(io.Discard, l.Tar); !errors.Is(err, context.Canceled) {
					t.Errorf("reading on after cancel: %v, want context.Canceled", err)
				}
			}
			if !errors.Is(last, context.Canceled) {
				t.Errorf("iteration ended with %v, want context.Canceled", last)
			}
		})
	}
}
