package imgsrc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"strings"
	"time"

	"github.com/containers/image/v5/docker"
	dockerarchive "github.com/containers/image/v5/docker/archive"
	"github.com/containers/image/v5/docker/daemon"
	"github.com/containers/image/v5/docker/reference"
	"github.com/containers/image/v5/image"
	"github.com/containers/image/v5/manifest"
	ociarchive "github.com/containers/image/v5/oci/archive"
	ocilayout "github.com/containers/image/v5/oci/layout"
	"github.com/containers/image/v5/pkg/blobinfocache/none"
	"github.com/containers/image/v5/pkg/compression"
	"github.com/containers/image/v5/types"
	digest "github.com/opencontainers/go-digest"
)

// DefaultPlatform is the platform chosen from a multi-platform image when
// Options.Platform is empty: Nitro Enclaves run on x86-64 parents.
const DefaultPlatform = "linux/amd64"

// ErrDigestMismatch reports a blob whose content does not match the digest
// the manifest or the image configuration promised.
var ErrDigestMismatch = errors.New("digest mismatch")

// Options tune Open. The zero value reads linux/amd64 with default settings.
type Options struct {
	// Platform is "os/arch[/variant]", e.g. "linux/arm64/v8". It selects
	// the image from a manifest list or OCI index. Empty means
	// DefaultPlatform.
	Platform string

	// SystemContext, if not nil, is passed to containers/image (registry
	// credentials, daemon host, TLS settings). Its OS, architecture and
	// variant choices are overwritten from Platform.
	SystemContext *types.SystemContext
}

// Config is what imgbuild keeps of an image's configuration: how to run
// it, and when it was made.
type Config struct {
	Entrypoint []string          `json:"entrypoint,omitempty"`
	Cmd        []string          `json:"cmd,omitempty"`
	Env        []string          `json:"env,omitempty"`
	WorkingDir string            `json:"workingDir,omitempty"`
	User       string            `json:"user,omitempty"`
	Labels     map[string]string `json:"labels,omitempty"`
	// Created is the image's creation time; zero if the image has none.
	Created time.Time `json:"created,omitzero"`
	OS      string    `json:"os,omitempty"`
	Arch    string    `json:"architecture,omitempty"`
	Variant string    `json:"variant,omitempty"`
}

// LayerInfo describes one layer of an image.
type LayerInfo struct {
	Index     int           // 0 for the base layer
	Digest    digest.Digest // digest of the blob as stored (usually compressed)
	DiffID    digest.Digest // digest of the uncompressed tar, from the config
	MediaType string
	Size      int64 // blob size as stored; -1 if unknown
}

// A Layer is one layer being read: its description and its uncompressed
// tar stream. Tar is valid only until the loop body that received it
// returns.
type Layer struct {
	LayerInfo
	Tar io.Reader
}

// Image is an opened container image. Close it when done.
type Image struct {
	// Ref is the reference as resolved, with its transport
	// ("docker-daemon:app:latest").
	Ref string
	// Digest is the digest of the image's (single-platform) manifest.
	Digest digest.Digest
	// ConfigDigest is the digest of the configuration blob: docker's
	// "image ID".
	ConfigDigest digest.Digest
	Config       Config
	// LayerInfos lists the layers, base first.
	LayerInfos []LayerInfo

	src types.ImageSource
}

// Open resolves ref, picks the platform's manifest and reads the image
// configuration. The layers are read later, by Layers.
func Open(ctx context.Context, ref string, opts Options) (*Image, error) {
	sys, err := systemContext(opts)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", ref, err)
	}
	refs, err := ParseReference(ref)
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, r := range refs {
		name := transportName(r)
		src, err := r.NewImageSource(ctx, sys)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
			continue
		}
		im, err := open(ctx, sys, src, name)
		if err != nil {
			src.Close()
			return nil, fmt.Errorf("image %s: %w", name, err)
		}
		return im, nil
	}
	return nil, fmt.Errorf("image %s: %w", ref, errors.Join(errs...))
}

// transportName is r in transport:reference form, without the trailing
// ':' oci-archive and oci write for an empty image name
// ("oci-archive:app.tar", not "oci-archive:app.tar:"): it becomes the
// EIF's ImageName.
func transportName(r types.ImageReference) string {
	return strings.TrimSuffix(r.Transport().Name()+":"+r.StringWithinTransport(), ":")
}

// transport returns the transport called name, among those imgsrc
// imports, or nil.
func transport(name string) types.ImageTransport {
	for _, t := range []types.ImageTransport{docker.Transport, dockerarchive.Transport, daemon.Transport, ociarchive.Transport, ocilayout.Transport} {
		if t.Name() == name {
			return t
		}
	}
	return nil
}

// ParseReference parses ref in containers/image's "transport:details"
// syntax. The transports understood are docker, docker-archive,
// docker-daemon, oci-archive and oci. A reference without one of those
// prefixes is a docker image name; for it ParseReference returns two
// candidates, the local docker daemon's image and the registry's, in the
// order Open tries them. A name without tag or digest means ":latest".
func ParseReference(ref string) ([]types.ImageReference, error) {
	if name, rest, ok := strings.Cut(ref, ":"); ok {
		if t := transport(name); t != nil {
			r, err := t.ParseReference(rest)
			if err != nil {
				return nil, fmt.Errorf("image reference %q: %w", ref, err)
			}
			return []types.ImageReference{r}, nil
		}
	}
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return nil, fmt.Errorf("image reference %q: not a transport:reference nor an image name: %w", ref, err)
	}
	named = reference.TagNameOnly(named)
	d, err := daemon.NewReference("", named)
	if err != nil {
		return nil, fmt.Errorf("image reference %q: %w", ref, err)
	}
	r, err := docker.NewReference(named)
	if err != nil {
		return nil, fmt.Errorf("image reference %q: %w", ref, err)
	}
	return []types.ImageReference{d, r}, nil
}

// systemContext builds containers/image's settings from opts.
func systemContext(opts Options) (*types.SystemContext, error) {
	sys := &types.SystemContext{}
	if opts.SystemContext != nil {
		c := *opts.SystemContext
		sys = &c
	}
	p := opts.Platform
	if p == "" {
		p = DefaultPlatform
	}
	parts := strings.Split(p, "/")
	if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" {
		return nil, fmt.Errorf("platform %q: want os/arch[/variant]", p)
	}
	sys.OSChoice, sys.ArchitectureChoice = parts[0], parts[1]
	sys.VariantChoice = ""
	if len(parts) == 3 {
		sys.VariantChoice = parts[2]
	}
	return sys, nil
}

func open(ctx context.Context, sys *types.SystemContext, src types.ImageSource, name string) (*Image, error) {
	raw, mime, err := src.GetManifest(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("reading manifest: %w", err)
	}
	var instance *digest.Digest
	if manifest.MIMETypeIsMultiImage(mime) {
		list, err := manifest.ListFromBlob(raw, mime)
		if err != nil {
			return nil, fmt.Errorf("parsing manifest list: %w", err)
		}
		d, err := list.ChooseInstance(sys)
		if err != nil {
			return nil, fmt.Errorf("choosing platform %s/%s from manifest list: %w", sys.OSChoice, sys.ArchitectureChoice, err)
		}
		instance = &d
		if raw, _, err = src.GetManifest(ctx, instance); err != nil {
			return nil, fmt.Errorf("reading manifest %s: %w", d, err)
		}
	}
	md, err := manifest.Digest(raw)
	if err != nil {
		return nil, fmt.Errorf("hashing manifest: %w", err)
	}
	if instance != nil && md != *instance {
		return nil, fmt.Errorf("manifest %s: %w: content hashes to %s", *instance, ErrDigestMismatch, md)
	}
	img, err := image.FromUnparsedImage(ctx, sys, image.UnparsedInstance(src, instance))
	if err != nil {
		return nil, fmt.Errorf("parsing manifest %s: %w", md, err)
	}
	oc, err := img.OCIConfig(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading image config: %w", err)
	}
	if oc.OS != "" && oc.OS != sys.OSChoice || oc.Architecture != "" && oc.Architecture != sys.ArchitectureChoice {
		return nil, fmt.Errorf("image is %s/%s, want %s/%s (choose with --platform)", oc.OS, oc.Architecture, sys.OSChoice, sys.ArchitectureChoice)
	}
	infos := img.LayerInfos()
	// Docker schema1 images have no diff IDs and are long deprecated;
	// schema2 and OCI images carry one per layer.
	if len(oc.RootFS.DiffIDs) != len(infos) {
		return nil, fmt.Errorf("image config lists %d diff IDs for %d layers", len(oc.RootFS.DiffIDs), len(infos))
	}
	im := &Image{
		Ref:          name,
		Digest:       md,
		ConfigDigest: img.ConfigInfo().Digest,
		Config: Config{
			Entrypoint: oc.Config.Entrypoint,
			Cmd:        oc.Config.Cmd,
			Env:        oc.Config.Env,
			WorkingDir: oc.Config.WorkingDir,
			User:       oc.Config.User,
			Labels:     oc.Config.Labels,
			OS:         oc.OS,
			Arch:       oc.Architecture,
			Variant:    oc.Variant,
		},
		src: src,
	}
	if oc.Created != nil {
		im.Config.Created = oc.Created.UTC()
	}
	for i, l := range infos {
		im.LayerInfos = append(im.LayerInfos, LayerInfo{
			Index:     i,
			Digest:    l.Digest,
			DiffID:    oc.RootFS.DiffIDs[i],
			MediaType: l.MediaType,
			Size:      l.Size,
		})
	}
	return im, nil
}

// Close releases the image source (and any temporary files a transport
// made, such as an extracted oci-archive).
func (im *Image) Close() error {
	if err := im.src.Close(); err != nil {
		return fmt.Errorf("image %s: closing: %w", im.Ref, err)
	}
	return nil
}

// Layers returns an iterator over the image's layers, base first, each as
// an uncompressed tar stream. Each layer's blob digest and diff ID are
// verified as it is read; a mismatch, or any read error, is yielded as an
// error (wrapping ErrDigestMismatch for a mismatch) and ends the
// iteration. The loop body need not read Tar to the end: what it leaves
// is read and verified before the next layer. Because the stream is
// verified only once fully read, a consumer must discard what it built
// from a layer when the iteration yields an error.
func (im *Image) Layers(ctx context.Context) iter.Seq2[Layer, error] {
	return func(yield func(Layer, error) bool) {
		for _, info := range im.LayerInfos {
			if err := ctx.Err(); err != nil {
				yield(Layer{LayerInfo: info}, err)
				return
			}
			if err := im.readLayer(ctx, info, yield); err != nil {
				if !errors.Is(err, errStop) {
					yield(Layer{LayerInfo: info}, err)
				}
				return
			}
		}
	}
}

var errStop = errors.New("iteration stopped")

func (im *Image) readLayer(ctx context.Context, info LayerInfo, yield func(Layer, error) bool) error {
	rc, _, err := im.src.GetBlob(ctx, types.BlobInfo{Digest: info.Digest, Size: info.Size, MediaType: info.MediaType}, none.NoCache)
	if err != nil {
		return fmt.Errorf("layer %d %s: fetching blob: %w", info.Index, info.Digest, err)
	}
	// Each verifier reads (and decompresses) on its own goroutine. On the
	// way out they are told to stop, the blob is closed to unblock a read
	// in flight, and only then are they waited for and the decompressor,
	// which the diff ID's verifier may still be reading, closed.
	var (
		vs     []*verifier
		closer io.Closer
	)
	defer func() {
		for _, v := range vs {
			v.signal()
		}
		rc.Close()
		for _, v := range vs {
			v.wait()
		}
		if closer != nil {
			closer.Close()
		}
	}()
	blob, err := newVerifier(ctx, rc, info.Digest, "blob")
	if err != nil {
		return fmt.Errorf("layer %d: %w", info.Index, err)
	}
	vs = append(vs, blob)
	decompress, stream, err := compression.DetectCompression(blob)
	if err != nil {
		return fmt.Errorf("layer %d %s: detecting compression: %w", info.Index, info.Digest, err)
	}
	var tar io.Reader = stream
	if decompress != nil {
		d, err := decompress(stream)
		if err != nil {
			return fmt.Errorf("layer %d %s: decompressing: %w", info.Index, info.Digest, err)
		}
		closer = d
		tar = d
	}
	var diff io.Reader = tar
	// An uncompressed blob's digest is its diff ID: hashing it twice
	// would only cost time.
	if decompress == nil && info.DiffID == info.Digest {
		diff = stream
	} else {
		v, err := newVerifier(ctx, tar, info.DiffID, "diff ID")
		if err != nil {
			return fmt.Errorf("layer %d: %w", info.Index, err)
		}
		vs = append(vs, v)
		diff = v
	}
	if !yield(Layer{LayerInfo: info, Tar: diff}, nil) {
		return errStop
	}
	// Verify what the consumer left unread: tar's end-of-archive padding,
	// compression trailers.
	if _, err := io.Copy(io.Discard, diff); err != nil {
		return fmt.Errorf("layer %d %s: %w", info.Index, info.Digest, err)
	}
	if _, err := io.Copy(io.Discard, blob); err != nil {
		return fmt.Errorf("layer %d %s: %w", info.Index, info.Digest, err)
	}
	return nil
}
