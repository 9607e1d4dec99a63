//go:build ignore

// hostile-images writes the crafted container images of issue 11 as OCI
// layouts (usable as oci:DIR:TAG, or tarred as oci-archive:), streaming
// each layer so that writing them needs little memory:
//
//	go run scripts/hostile-images.go -kind xattr   -out /tmp/xattr   # 3,000 files × 1,000 KiB SCHILY.xattr.user.a
//	go run scripts/hostile-images.go -kind bomb    -out /tmp/bomb    # one 2 GiB file of zeroes (~2 MiB of gzip)
//	go run scripts/hostile-images.go -kind million -out /tmp/million # 1,000,000 empty files
//
// The peak memory of "imgbuild --in oci:DIR:hostile" on each is what the
// README's threat-model section reports.
package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"hash"
	"io"
	"log"
	"os"
	"path/filepath"
	"time"
)

func main() {
	kind := flag.String("kind", "xattr", "xattr, bomb or million")
	out := flag.String("out", "", "output OCI layout directory (required)")
	n := flag.Int("n", 0, "number of files (default: 3000 for xattr, 1000000 for million)")
	flag.Parse()
	if *out == "" {
		flag.Usage()
		os.Exit(2)
	}
	if err := run(*kind, *out, *n); err != nil {
		log.Fatal(err)
	}
}

type digester struct {
	w io.Writer
	h hash.Hash
	n int64
}

func (d *digester) Write(p []byte) (int, error) {
	d.h.Write(p)
	d.n += int64(len(p))
	return d.w.Write(p)
}

func (d *digester) sum() string { return "sha256:" + hex.EncodeToString(d.h.Sum(nil)) }

func run(kind, out string, n int) error {
	blobs := filepath.Join(out, "blobs", "sha256")
	if err := os.MkdirAll(blobs, 0o755); err != nil {
		return err
	}
	tmp := filepath.Join(blobs, "layer.tmp")
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	comp := &digester{w: f, h: sha256.New()}
	zw, _ := gzip.NewWriterLevel(comp, gzip.BestCompression)
	raw := &digester{w: zw, h: sha256.New()}
	tw := tar.NewWriter(raw)
	t0 := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	switch kind {
	case "xattr":
		if n == 0 {
			n = 3000
		}
		val := string(bytes.Repeat([]byte{'a'}, 1000<<10))
		for i := range n {
			if err := tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("f%05d", i), Mode: 0o644, ModTime: t0, Typeflag: tar.TypeReg,
				Format: tar.FormatPAX, PAXRecords: map[string]string{"SCHILY.xattr.user.a": val}}); err != nil {
				return err
			}
		}
	case "bomb":
		const size = 2 << 30
		if err := tw.WriteHeader(&tar.Header{Name: "zeroes", Mode: 0o644, ModTime: t0, Typeflag: tar.TypeReg, Size: size}); err != nil {
			return err
		}
		zero := make([]byte, 1<<20)
		for range size / len(zero) {
			if _, err := tw.Write(zero); err != nil {
				return err
			}
		}
	case "million":
		if n == 0 {
			n = 1000000
		}
		for i := range n {
			if i%1000 == 0 {
				if err := tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("d%04d/", i/1000), Mode: 0o755, ModTime: t0, Typeflag: tar.TypeDir}); err != nil {
					return err
				}
			}
			if err := tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("d%04d/f%04d", i/1000, i%1000), Mode: 0o644, ModTime: t0, Typeflag: tar.TypeReg}); err != nil {
				return err
			}
		}
	default:
		return fmt.Errorf("unknown -kind %q", kind)
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	layerDigest := comp.sum()
	if err := os.Rename(tmp, filepath.Join(blobs, layerDigest[7:])); err != nil {
		return err
	}
	blob := func(b []byte) (string, int) {
		s := sha256.Sum256(b)
		d := hex.EncodeToString(s[:])
		if err := os.WriteFile(filepath.Join(blobs, d), b, 0o644); err != nil {
			log.Fatal(err)
		}
		return "sha256:" + d, len(b)
	}
	cfg, _ := json.Marshal(map[string]any{
		"architecture": "amd64", "os": "linux", "created": t0,
		"config": map[string]any{"Cmd": []string{"/bin/sh"}},
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{raw.sum()}},
	})
	cd, cn := blob(cfg)
	man, _ := json.Marshal(map[string]any{
		"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
		"config": map[string]any{"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cn},
		"layers": []any{map[string]any{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layerDigest, "size": comp.n}},
	})
	md, mn := blob(man)
	idx, _ := json.Marshal(map[string]any{
		"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
		"manifests": []any{map[string]any{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": mn,
			"annotations": map[string]string{"org.opencontainers.image.ref.name": "hostile"}}},
	})
	if err := os.WriteFile(filepath.Join(out, "index.json"), idx, 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(out, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644); err != nil {
		return err
	}
	fmt.Printf("%s: layer %s, %d bytes compressed, %d uncompressed\n", out, layerDigest, comp.n, raw.n)
	return nil
}
