// Package ocitest builds small container images for tests: tar layers from
// a list of entries, and OCI image layouts (the "oci:" transport's
// directory format, written by hand: blobs, index.json, oci-layout) from
// those layers. Tests turn a layout into oci-archive or docker-archive
// tarballs with skopeo, so no image file needs to be committed.
package ocitest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/containers/image/v5/pkg/compression"
	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// Entry is one tar entry: a header and, for regular files, a body. Size is
// set from Body when zero.
type Entry struct {
	tar.Header
	Body []byte
}

// File, Dir, Symlink, Link and Whiteout return entries with the given
// name and defaults (mode 0644 or 0755, owner 0:0, mtime 2020-01-01 UTC).
func File(name, body string) Entry {
	return Entry{Header: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, ModTime: T0()}, Body: []byte(body)}
}

// Dir returns a directory entry.
func Dir(name string) Entry {
	return Entry{Header: tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: 0o755, ModTime: T0()}}
}

// Symlink returns a symlink entry name -> target.
func Symlink(name, target string) Entry {
	return Entry{Header: tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777, ModTime: T0()}}
}

// Link returns a hard-link entry name to the earlier path target.
func Link(name, target string) Entry {
	return Entry{Header: tar.Header{Typeflag: tar.TypeLink, Name: name, Linkname: target, Mode: 0o644, ModTime: T0()}}
}

// Whiteout returns the OCI whiteout entry deleting dir/name
// (".wh.name"); name ".wh..opq" gives the opaque marker of dir.
func Whiteout(dir, name string) Entry {
	return File(filepath.Join(dir, ".wh."+name), "")
}

// T0 returns the default modification time of entries, 2020-01-01 UTC.
func T0() time.Time { return time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC) }

// Tar returns an uncompressed tar stream (PAX format where needed) of
// entries, in order.
func Tar(entries ...Entry) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := e.Header
		if h.Typeflag == tar.TypeReg && h.Size == 0 {
			h.Size = int64(len(e.Body))
		}
		if err := tw.WriteHeader(&h); err != nil {
			return nil, fmt.Errorf("tar header %s: %w", h.Name, err)
		}
		if len(e.Body) > 0 {
			if _, err := tw.Write(e.Body); err != nil {
				return nil, fmt.Errorf("tar body %s: %w", h.Name, err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Compression of layer blobs in a layout.
type Compression int

// Layer compressions.
const (
	Uncompressed Compression = iota
	Gzip
	Zstd
)

// Image describes an image to write into a layout.
type Image struct {
	Layers      [][]byte // uncompressed tar streams, base first
	Compression Compression
	Config      v1.ImageConfig
	Created     time.Time
	OS, Arch    string // default linux/amd64
	Variant     string
	// DiffIDs, if set, replace the diff IDs computed from Layers (to
	// write images whose config lies).
	DiffIDs []digest.Digest
}

// Layout is an OCI image layout being written in Dir.
type Layout struct {
	Dir      string
	manifest []v1.Descriptor
}

// NewLayout starts an OCI layout in dir (created if needed).
func NewLayout(dir string) (*Layout, error) {
	if err := os.MkdirAll(filepath.Join(dir, "blobs", "sha256"), 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, v1.ImageLayoutFile), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644); err != nil {
		return nil, err
	}
	return &Layout{Dir: dir}, nil
}

// WriteBlob stores b and returns its descriptor.
func (l *Layout) WriteBlob(mediaType string, b []byte) (v1.Descriptor, error) {
	d := digest.FromBytes(b)
	if err := os.WriteFile(filepath.Join(l.Dir, "blobs", "sha256", d.Encoded()), b, 0o644); err != nil {
		return v1.Descriptor{}, err
	}
	return v1.Descriptor{MediaType: mediaType, Digest: d, Size: int64(len(b))}, nil
}

// WriteImage stores img's layers, config and manifest and returns the
// manifest's descriptor (not yet referenced from index.json).
func (l *Layout) WriteImage(img Image) (v1.Descriptor, error) {
	os_, arch := img.OS, img.Arch
	if os_ == "" {
		os_ = "linux"
	}
	if arch == "" {
		arch = "amd64"
	}
	m := v1.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: v1.MediaTypeImageManifest}
	cfg := v1.Image{
		Platform: v1.Platform{OS: os_, Architecture: arch, Variant: img.Variant},
		Config:   img.Config,
		RootFS:   v1.RootFS{Type: "layers"},
	}
	if !img.Created.IsZero() {
		c := img.Created
		cfg.Created = &c
	}
	for i, tb := range img.Layers {
		if img.DiffIDs == nil {
			cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, digest.FromBytes(tb))
		}
		blob, mt := tb, v1.MediaTypeImageLayer
		switch img.Compression {
		case Gzip:
			var buf bytes.Buffer
			zw := gzip.NewWriter(&buf)
			zw.Write(tb)
			if err := zw.Close(); err != nil {
				return v1.Descriptor{}, err
			}
			blob, mt = buf.Bytes(), v1.MediaTypeImageLayerGzip
		case Zstd:
			var buf bytes.Buffer
			zw, err := compression.CompressStream(&buf, compression.Zstd, nil)
			if err != nil {
				return v1.Descriptor{}, err
			}
			zw.Write(tb)
			if err := zw.Close(); err != nil {
				return v1.Descriptor{}, err
			}
			blob, mt = buf.Bytes(), v1.MediaTypeImageLayerZstd
		}
		d, err := l.WriteBlob(mt, blob)
		if err != nil {
			return v1.Descriptor{}, fmt.Errorf("layer %d: %w", i, err)
		}
		m.Layers = append(m.Layers, d)
	}
	if img.DiffIDs != nil {
		cfg.RootFS.DiffIDs = img.DiffIDs
	}
	cb, err := json.Marshal(cfg)
	if err != nil {
		return v1.Descriptor{}, err
	}
	if m.Config, err = l.WriteBlob(v1.MediaTypeImageConfig, cb); err != nil {
		return v1.Descriptor{}, err
	}
	mb, err := json.Marshal(m)
	if err != nil {
		return v1.Descriptor{}, err
	}
	d, err := l.WriteBlob(v1.MediaTypeImageManifest, mb)
	if err != nil {
		return v1.Descriptor{}, err
	}
	d.Platform = &v1.Platform{OS: os_, Architecture: arch, Variant: img.Variant}
	return d, nil
}

// Tag references the descriptor d (a manifest or an index) from
// index.json under the name tag ("org.opencontainers.image.ref.name") and
// rewrites index.json.
func (l *Layout) Tag(d v1.Descriptor, tag string) error {
	d.Annotations = map[string]string{v1.AnnotationRefName: tag}
	l.manifest = append(l.manifest, d)
	idx := v1.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: v1.MediaTypeImageIndex, Manifests: l.manifest}
	b, err := json.Marshal(idx)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(l.Dir, "index.json"), b, 0o644)
}

// WriteIndex stores an image index over manifests (each with its Platform
// set, as WriteImage returns them) and returns its descriptor.
func (l *Layout) WriteIndex(manifests ...v1.Descriptor) (v1.Descriptor, error) {
	idx := v1.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: v1.MediaTypeImageIndex, Manifests: manifests}
	b, err := json.Marshal(idx)
	if err != nil {
		return v1.Descriptor{}, err
	}
	return l.WriteBlob(v1.MediaTypeImageIndex, b)
}

// WriteLayout writes img as the only image of a new layout in dir, tagged
// tag, and returns the manifest descriptor. The image is then
// "oci:DIR:TAG".
func WriteLayout(dir, tag string, img Image) (v1.Descriptor, error) {
	l, err := NewLayout(dir)
	if err != nil {
		return v1.Descriptor{}, err
	}
	d, err := l.WriteImage(img)
	if err != nil {
		return v1.Descriptor{}, err
	}
	return d, l.Tag(d, tag)
}
