package erofs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// recordTee keeps what a Tee is given and checks the promised order.
type recordTee struct {
	size  int64
	img   memImage
	next  int64 // the next offset expected, block 0 aside
	calls []int64
	err   error // returned from WriteAt once set
}

func (r *recordTee) Begin(size int64) error { r.size = size; r.next = BlockSize; return nil }

func (r *recordTee) WriteAt(p []byte, off int64) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	r.calls = append(r.calls, off)
	switch {
	case len(p)%BlockSize != 0:
		return 0, fmt.Errorf("chunk of %d bytes at %d is not whole blocks", len(p), off)
	case off == 0 && len(p) != BlockSize:
		return 0, fmt.Errorf("block 0 given with %d bytes", len(p))
	case off != 0 && off != r.next:
		return 0, fmt.Errorf("chunk at %d, want %d", off, r.next)
	case off != 0:
		r.next += int64(len(p))
	}
	return r.img.WriteAt(p, off)
}

// TestTee: the tee sees the image Write wrote, byte for byte, every block
// once, in order, the superblock last.
func TestTee(t *testing.T) {
	for _, big := range []bool{false, true} {
		t.Run(fmt.Sprint("big=", big), func(t *testing.T) {
			tr := sampleTree(t, big)
			var img memImage
			tee := &recordTee{}
			st, err := Write(context.Background(), &img, tr, Options{Tee: tee})
			if err != nil {
				t.Fatal(err)
			}
			if tee.size != st.Size || int64(len(tee.img.b)) != st.Size {
				t.Fatalf("tee: Begin(%d), %d bytes; image %d bytes", tee.size, len(tee.img.b), st.Size)
			}
			if !bytes.Equal(tee.img.b, img.b) {
				t.Fatal("tee's bytes differ from the image's")
			}
			if tee.calls[len(tee.calls)-1] != 0 || tee.next != st.Size {
				t.Fatalf("tee calls %v: want blocks 1.. in order up to %d, then block 0", tee.calls, st.Size)
			}
			if plain := writeImage(t, tr, Options{}); !bytes.Equal(plain, img.b) {
				t.Fatal("an image written with a tee differs from one without")
			}
		})
	}
}

func TestTeeFails(t *testing.T) {
	_, err := Write(context.Background(), &memImage{}, sampleTree(t, true), Options{Tee: &recordTee{err: errors.New("tee full")}})
	if err == nil || !strings.Contains(err.Error(), "tee full") {
		t.Fatalf("err = %v, want the tee's", err)
	}
}
