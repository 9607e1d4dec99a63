package imgsrc_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/enclave-storage/enclave-storage/imgsrc"
	"github.com/enclave-storage/enclave-storage/imgsrc/ocitest"
)

// TestBlob reads a layer's blob as stored: byte for byte the file in
// the layout. Closed after a partial read (more than one read-ahead chunk
// left), the reader stops: Close returns and reading on ends in
// io.ErrClosedPipe.
func TestBlob(t *testing.T) {
	big := make([]byte, 9<<20)
	for i := range big {
		big[i] = byte(i * 131 / 7)
	}
	img := testImage(t, ocitest.Uncompressed)
	img.Layers[0] = mustTar(t, ocitest.File("big", string(big)))
	dir := t.TempDir()
	if _, err := ocitest.WriteLayout(dir, "app", img); err != nil {
		t.Fatal(err)
	}
	im, err := imgsrc.Open(context.Background(), "oci:"+dir+":app", imgsrc.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer im.Close()
	info := im.LayerInfos[0]
	want, err := os.ReadFile(filepath.Join(dir, "blobs", "sha256", info.Digest.Encoded()))
	if err != nil {
		t.Fatal(err)
	}

	rc, err := im.Blob(context.Background(), info)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("whole blob: %d bytes, err %v; want the layout's %d bytes", len(got), err, len(want))
	}
	if err := rc.Close(); err != nil {
		t.Fatal(err)
	}

	rc, err = im.Blob(context.Background(), info)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(rc, make([]byte, 100)); err != nil {
		t.Fatal(err)
	}
	if err := rc.Close(); err != nil {
		t.Fatal(err)
	}
	// What was read ahead before Close may still come out; then the
	// stream ends as stopped, neither at EOF nor with the closed file's
	// read error a goroutine left running would hand on.
	if rest, err := io.ReadAll(rc); !errors.Is(err, io.ErrClosedPipe) || len(rest) >= len(want)-100 {
		t.Errorf("reading after Close: %d more bytes, err %v; want io.ErrClosedPipe before the end", len(rest), err)
	}
}
