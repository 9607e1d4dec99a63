package imgsrc

import (
	"context"
	"fmt"
	"io"

	"github.com/containers/image/v5/pkg/blobinfocache/none"
	"github.com/containers/image/v5/types"
)

// Blob returns a layer's blob as stored (compressed or not), for copying
// it unchanged into another image. Its digest is checked as it is read:
// the read that reaches EOF fails, wrapping ErrDigestMismatch, when the
// content does not match, so a consumer must not commit what it wrote from
// a blob before reading it to the end. Close the reader when done.
func (im *Image) Blob(ctx context.Context, info LayerInfo) (io.ReadCloser, error) {
	rc, _, err := im.src.GetBlob(ctx, types.BlobInfo{Digest: info.Digest, Size: info.Size, MediaType: info.MediaType}, none.NoCache)
	if err != nil {
		return nil, fmt.Errorf("image %s: layer %d %s: fetching blob: %w", im.Ref, info.Index, info.Digest, err)
	}
	v, err := newVerifier(ctx, rc, info.Digest, "blob")
	if err != nil {
		rc.Close()
		return nil, fmt.Errorf("image %s: layer %d: %w", im.Ref, info.Index, err)
	}
	return &verifiedBlob{v, rc}, nil
}

// verifiedBlob is a blob read through its verifier, whose read-ahead
// goroutine Close ends.
type verifiedBlob struct {
	*verifier
	rc io.Closer
}

// Close stops the read-ahead goroutine as readLayer does: signal it, close
// the blob to unblock a read in flight, then wait for it.
func (b *verifiedBlob) Close() error {
	b.signal()
	err := b.rc.Close()
	b.wait()
	return err
}
