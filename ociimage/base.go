package ociimage

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"

	"github.com/containers/image/v5/manifest"
	"github.com/containers/image/v5/types"
	"github.com/enclave-storage/enclave-storage/imgsrc"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// ErrBaseLayer reports a base image layer that cannot be copied into the
// destination's manifest type as it is (a zstd layer into a Docker
// schema 2 manifest, a foreign or unknown layer type).
var ErrBaseLayer = errors.New("base layer cannot be copied")

// checkBase returns the base image's layers after checking its platform;
// nil without a base.
func checkBase(b *imgsrc.Image, osName, arch string) ([]imgsrc.LayerInfo, error) {
	if b == nil {
		return nil, nil
	}
	if b.Config.OS != osName || b.Config.Arch != arch {
		return nil, fmt.Errorf("ociimage: base image %s is %s/%s, the image is %s/%s", b.Ref, b.Config.OS, b.Config.Arch, osName, arch)
	}
	for _, l := range b.LayerInfos {
		if l.Size < 0 {
			return nil, fmt.Errorf("ociimage: base image %s: layer %d %s has no size in its manifest", b.Ref, l.Index, l.Digest)
		}
	}
	return b.LayerInfos, nil
}

// layerMediaType is a base layer's media type in a manifest of type mt.
// OCI and Docker name the same tar and gzip layers differently; zstd has
// no Docker name.
func layerMediaType(t, mt string) (string, error) {
	type names struct{ oci, docker string }
	for _, n := range []names{
		{v1.MediaTypeImageLayer, manifest.DockerV2SchemaLayerMediaTypeUncompressed},
		{v1.MediaTypeImageLayerGzip, manifest.DockerV2Schema2LayerMediaType},
		{v1.MediaTypeImageLayerZstd, ""},
	} {
		if t != n.oci && t != n.docker {
			continue
		}
		if mt != manifest.DockerV2Schema2MediaType {
			return n.oci, nil
		}
		if n.docker == "" {
			return "", fmt.Errorf("%w: %s has no Docker schema 2 media type (write to oci: or oci-archive:)", ErrBaseLayer, t)
		}
		return n.docker, nil
	}
	return "", fmt.Errorf("%w: media type %q", ErrBaseLayer, t)
}

// putBase copies one base layer's blob, unchanged, to d. The blob's
// digest is checked as it streams; PutBlob fails on a mismatch before the
// manifest is written.
func putBase(ctx context.Context, b *imgsrc.Image, l imgsrc.LayerInfo, mediaType string, d types.ImageDestination, cache types.BlobInfoCache) error {
	rc, err := b.Blob(ctx, l)
	if err != nil {
		return err
	}
	defer rc.Close()
	if _, err := d.PutBlob(ctx, rc, types.BlobInfo{Digest: l.Digest, Size: l.Size, MediaType: mediaType}, cache, false); err != nil {
		return fmt.Errorf("base layer %d %s: %w", l.Index, l.Digest, err)
	}
	return nil
}

// mergeEnv is base's variables, then over's, a variable of over replacing
// base's of the same name in place.
func mergeEnv(base, over []string) []string {
	out := append([]string(nil), base...)
	for _, kv := range over {
		name, _, _ := strings.Cut(kv, "=")
		replaced := false
		for i, b := range out {
			if n, _, _ := strings.Cut(b, "="); n == name {
				out[i], replaced = kv, true
			}
		}
		if !replaced {
			out = append(out, kv)
		}
	}
	return out
}

// mergeLabels is base's labels with over's on top.
func mergeLabels(base, over map[string]string) map[string]string {
	if len(base) == 0 {
		return over
	}
	out := maps.Clone(base)
	maps.Copy(out, over)
	return out
}
