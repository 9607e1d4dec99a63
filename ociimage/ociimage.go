package ociimage

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/containers/image/v5/manifest"
	"github.com/containers/image/v5/pkg/blobinfocache/none"
	"github.com/containers/image/v5/types"
	"github.com/enclave-storage/enclave-storage/imgsrc"
	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// ErrNoTransport reports a destination without an explicit transport:
// a bare name could mean the docker daemon or a registry.
var ErrNoTransport = errors.New("destination needs a transport (oci:, oci-archive:, docker-archive:, docker-daemon:, docker://)")

// File is one regular file of a layer.
type File struct {
	// Path is the file's absolute path in the image ("/enclave/rootfs.img").
	Path string
	// Source is the file on disk to copy.
	Source string
	// Mode is its permission bits; zero means 0644.
	Mode os.FileMode
}

// Spec describes the image to write.
type Spec struct {
	// Layers lists the files of each layer, base first. The parent
	// directories of every file are added to its layer.
	Layers [][]File
	// Dirs are extra empty directories, added to the last layer (a
	// volume's mount point, for instance).
	Dirs []string
	// Entrypoint, Cmd, Env, WorkingDir, Labels and Volumes go into the
	// image configuration.
	Entrypoint, Cmd, Env []string
	WorkingDir           string
	Labels               map[string]string
	Volumes              []string
	// Created stamps the configuration and every tar entry.
	Created time.Time
	// Platform is "os/arch[/variant]"; empty means imgsrc.DefaultPlatform.
	Platform string
	// Base, when not nil, is an opened image whose layers go first,
	// copied blob for blob (so its digests and compression stay), and
	// whose configuration gives the defaults: its Env (the Spec's
	// variables win by name), its Labels (the Spec's win), its
	// WorkingDir when the Spec has none. Its Entrypoint, Cmd, User and
	// Volumes are not kept: the Spec's process runs as root. It must be
	// of the Spec's platform. Pin it by digest for a reproducible image.
	Base *imgsrc.Image
}

// Result describes a written image.
type Result struct {
	// Digest is the manifest's digest, ManifestType its media type (OCI,
	// or Docker schema 2 where the destination takes no other).
	Digest       digest.Digest
	ManifestType string
	// ConfigDigest is the configuration blob's digest (docker's image ID).
	ConfigDigest digest.Digest
	// Layers are the layers' digests (equal to their diff IDs: they are
	// not compressed) and sizes.
	Layers []v1.Descriptor
}

// Write writes the image described by spec to dest, a containers/image
// reference with its transport ("oci-archive:app.tar", "oci:dir:tag").
// sys, if not nil, carries registry or daemon settings.
func Write(ctx context.Context, dest string, spec *Spec, sys *types.SystemContext) (*Result, error) {
	ref, err := parseDest(dest)
	if err != nil {
		return nil, err
	}
	osName, arch, variant, err := platform(spec.Platform)
	if err != nil {
		return nil, err
	}
	layers := make([]layer, len(spec.Layers))
	for i, files := range spec.Layers {
		var dirs []string
		if i == len(spec.Layers)-1 {
			dirs = spec.Dirs
		}
		l, err := newLayer(files, dirs, spec.Created)
		if err != nil {
			return nil, err
		}
		if l.desc, err = l.measure(ctx); err != nil {
			return nil, err
		}
		layers[i] = l
	}
	baseInfos, err := checkBase(spec.Base, osName, arch)
	if err != nil {
		return nil, err
	}
	cfg := v1.Image{
		Created:  &spec.Created,
		Platform: v1.Platform{OS: osName, Architecture: arch, Variant: variant},
		Config: v1.ImageConfig{
			Entrypoint: spec.Entrypoint, Cmd: spec.Cmd, Env: spec.Env,
			WorkingDir: spec.WorkingDir, Labels: spec.Labels,
		},
		RootFS: v1.RootFS{Type: "layers"},
	}
	if b := spec.Base; b != nil {
		cfg.Config.Env = mergeEnv(b.Config.Env, spec.Env)
		cfg.Config.Labels = mergeLabels(b.Config.Labels, spec.Labels)
		if cfg.Config.WorkingDir == "" {
			cfg.Config.WorkingDir = b.Config.WorkingDir
		}
		for _, l := range baseInfos {
			cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, l.DiffID)
			cfg.History = append(cfg.History, v1.History{Created: &spec.Created, CreatedBy: "imgbuild --base: layer " + l.Digest.String()})
		}
	}
	if len(spec.Volumes) > 0 {
		cfg.Config.Volumes = map[string]struct{}{}
		for _, v := range spec.Volumes {
			cfg.Config.Volumes[v] = struct{}{}
		}
	}
	for _, l := range layers {
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, l.desc.Digest)
		cfg.History = append(cfg.History, v1.History{Created: &spec.Created, CreatedBy: "imgbuild"})
	}
	cj, err := json.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("ociimage: %w", err)
	}
	cdesc := v1.Descriptor{MediaType: v1.MediaTypeImageConfig, Digest: digest.FromBytes(cj), Size: int64(len(cj))}

	d, err := ref.NewImageDestination(ctx, sys)
	if err != nil {
		return nil, fmt.Errorf("ociimage: %s: %w", dest, err)
	}
	defer d.Close()
	mt := manifestType(d.SupportedManifestMIMETypes())
	var mj []byte
	var descs []v1.Descriptor
	for _, l := range baseInfos {
		t, err := layerMediaType(l.MediaType, mt)
		if err != nil {
			return nil, fmt.Errorf("ociimage: base layer %d %s: %w", l.Index, l.Digest, err)
		}
		descs = append(descs, v1.Descriptor{MediaType: t, Digest: l.Digest, Size: l.Size})
	}
	for _, l := range layers {
		descs = append(descs, l.desc)
	}
	if mt == manifest.DockerV2Schema2MediaType {
		var ls []manifest.Schema2Descriptor
		for _, l := range descs {
			if l.MediaType == v1.MediaTypeImageLayer { // ours
				l.MediaType = manifest.DockerV2SchemaLayerMediaTypeUncompressed
			}
			ls = append(ls, manifest.Schema2Descriptor{MediaType: l.MediaType, Digest: l.Digest, Size: l.Size})
		}
		mj, err = manifest.Schema2FromComponents(manifest.Schema2Descriptor{
			MediaType: manifest.DockerV2Schema2ConfigMediaType, Digest: cdesc.Digest, Size: cdesc.Size}, ls).Serialize()
	} else {
		mj, err = json.Marshal(v1.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: v1.MediaTypeImageManifest, Config: cdesc, Layers: descs})
	}
	if err != nil {
		return nil, fmt.Errorf("ociimage: %w", err)
	}

	cache := none.NoCache
	if _, err := d.PutBlob(ctx, strings.NewReader(string(cj)), types.BlobInfo{Digest: cdesc.Digest, Size: cdesc.Size, MediaType: cdesc.MediaType}, cache, true); err != nil {
		return nil, fmt.Errorf("ociimage: %s: config: %w", dest, err)
	}
	for i, l := range baseInfos {
		if err := putBase(ctx, spec.Base, l, descs[i].MediaType, d, cache); err != nil {
			return nil, fmt.Errorf("ociimage: %s: %w", dest, err)
		}
	}
	for _, l := range layers {
		if err := l.put(ctx, d, cache); err != nil {
			return nil, fmt.Errorf("ociimage: %s: %w", dest, err)
		}
	}
	if err := d.PutManifest(ctx, mj, nil); err != nil {
		return nil, fmt.Errorf("ociimage: %s: manifest: %w", dest, err)
	}
	if err := d.Commit(ctx, unparsed{ref, mj, mt}); err != nil {
		return nil, fmt.Errorf("ociimage: %s: %w", dest, err)
	}
	return &Result{Digest: digest.FromBytes(mj), ManifestType: mt, ConfigDigest: cdesc.Digest, Layers: descs}, nil
}

// parseDest parses dest, which must name its transport.
func parseDest(dest string) (types.ImageReference, error) {
	refs, err := imgsrc.ParseReference(dest)
	if err != nil {
		return nil, fmt.Errorf("ociimage: %w", err)
	}
	if len(refs) != 1 {
		return nil, fmt.Errorf("ociimage: %q: %w", dest, ErrNoTransport)
	}
	return refs[0], nil
}

func platform(p string) (osName, arch, variant string, err error) {
	if p == "" {
		p = imgsrc.DefaultPlatform
	}
	parts := strings.Split(p, "/")
	if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" {
		return "", "", "", fmt.Errorf("ociimage: platform %q: want os/arch[/variant]", p)
	}
	if len(parts) == 3 {
		variant = parts[2]
	}
	return parts[0], parts[1], variant, nil
}

// manifestType picks OCI unless the destination takes only Docker's
// schema 2 (docker-archive:, docker-daemon:). An empty list means any.
func manifestType(supported []string) string {
	if len(supported) == 0 || slices.Contains(supported, v1.MediaTypeImageManifest) {
		return v1.MediaTypeImageManifest
	}
	return manifest.DockerV2Schema2MediaType
}

// unparsed is the committed image as Commit wants to see it.
type unparsed struct {
	ref types.ImageReference
	m   []byte
	mt  string
}

func (u unparsed) Reference() types.ImageReference { return u.ref }
func (u unparsed) Manifest(context.Context) ([]byte, string, error) {
	return u.m, u.mt, nil
}
func (u unparsed) Signatures(context.Context) ([][]byte, error) { return nil, nil }

// layer is one layer's sorted entries and, once measured, its descriptor.
type layer struct {
	entries []entry
	mtime   time.Time
	desc    v1.Descriptor
}

// entry is a directory (source empty) or a regular file.
type entry struct {
	name   string // relative, no leading slash
	source string
	mode   os.FileMode
	size   int64
}

func newLayer(files []File, dirs []string, mtime time.Time) (layer, error) {
	l := layer{mtime: mtime}
	seen := map[string]bool{}
	addDir := func(p string) {
		for d := p; d != "." && d != "/" && d != ""; d = path.Dir(d) {
			if !seen[d] {
				seen[d] = true
				l.entries = append(l.entries, entry{name: d, mode: 0o755})
			}
		}
	}
	for _, d := range dirs {
		addDir(clean(d))
	}
	for _, f := range files {
		name := clean(f.Path)
		if name == "" || seen[name] {
			return layer{}, fmt.Errorf("ociimage: bad or repeated path %q", f.Path)
		}
		st, err := os.Stat(f.Source)
		if err != nil {
			return layer{}, fmt.Errorf("ociimage: %w", err)
		}
		if !st.Mode().IsRegular() {
			return layer{}, fmt.Errorf("ociimage: %s: not a regular file", f.Source)
		}
		mode := f.Mode.Perm()
		if mode == 0 {
			mode = 0o644
		}
		addDir(path.Dir(name))
		seen[name] = true
		l.entries = append(l.entries, entry{name: name, source: f.Source, mode: mode, size: st.Size()})
	}
	// Sorted by name: a parent ("a") sorts before its children ("a/b").
	slices.SortFunc(l.entries, func(a, b entry) int { return strings.Compare(a.name, b.name) })
	return l, nil
}

// clean makes p relative and clean; "" for the root or a path leaving it.
func clean(p string) string {
	c := strings.TrimPrefix(path.Clean("/"+p), "/")
	return c
}

// measure generates the tar once to learn its digest and size.
func (l layer) measure(ctx context.Context) (v1.Descriptor, error) {
	h := sha256.New()
	n, err := l.writeTar(ctx, h)
	if err != nil {
		return v1.Descriptor{}, err
	}
	return v1.Descriptor{MediaType: v1.MediaTypeImageLayer, Digest: digest.NewDigest(digest.SHA256, h), Size: n}, nil
}

// put generates the tar again, streaming it to d.
func (l layer) put(ctx context.Context, d types.ImageDestination, cache types.BlobInfoCache) error {
	pr, pw := io.Pipe()
	go func() {
		_, err := l.writeTar(ctx, pw)
		pw.CloseWithError(err)
	}()
	defer pr.Close()
	_, err := d.PutBlob(ctx, pr, types.BlobInfo{Digest: l.desc.Digest, Size: l.desc.Size, MediaType: l.desc.MediaType}, cache, false)
	return err
}

// countWriter counts the bytes written through it.
type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// writeTar writes the layer's tar to w and returns its size. A file whose
// size changed since newLayer fails the layer, so both passes agree.
func (l layer) writeTar(ctx context.Context, w io.Writer) (int64, error) {
	cw := &countWriter{w: w}
	tw := tar.NewWriter(cw)
	for _, e := range l.entries {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		h := &tar.Header{Name: e.name, Mode: int64(e.mode), ModTime: l.mtime, Format: tar.FormatPAX}
		if e.source == "" {
			h.Typeflag, h.Name = tar.TypeDir, e.name+"/"
			if err := tw.WriteHeader(h); err != nil {
				return 0, fmt.Errorf("ociimage: %w", err)
			}
			continue
		}
		h.Typeflag, h.Size = tar.TypeReg, e.size
		if err := tw.WriteHeader(h); err != nil {
			return 0, fmt.Errorf("ociimage: %w", err)
		}
		if err := copyFile(tw, e); err != nil {
			return 0, err
		}
	}
	if err := tw.Close(); err != nil {
		return 0, fmt.Errorf("ociimage: %w", err)
	}
	return cw.n, nil
}

func copyFile(w io.Writer, e entry) error {
	f, err := os.Open(e.source)
	if err != nil {
		return fmt.Errorf("ociimage: %w", err)
	}
	defer f.Close()
	n, err := io.Copy(w, io.LimitReader(f, e.size))
	if err != nil {
		return fmt.Errorf("ociimage: %s: %w", e.source, err)
	}
	if n != e.size {
		return fmt.Errorf("ociimage: %s: shrank from %d to %d bytes while being packed", e.source, e.size, n)
	}
	return nil
}
