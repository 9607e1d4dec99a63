package imgsrc

import (
	"context"
	"fmt"
	"hash"
	"io"
	"sync"

	digest "github.com/opencontainers/go-digest"
)

// Read-ahead chunks: big enough that reading a local blob costs one system
// call per MiB, few enough that a layer holds a few MiB at most.
const (
	chunkSize = 1 << 20
	chunks    = 4
)

// verifier reads r on its own goroutine, a chunk ahead of its consumer,
// and hashes what it read there, so that reading, hashing (and, when r
// decompresses, decompressing) one layer runs on another core than the tar
// parsing that consumes it. At EOF it fails unless the content matched
// the expected digest; it also stops on ctx cancellation. Every byte is
// read and hashed once: the consumer gets the very chunks that were
// hashed.
//
// signal, then wait, must be called when done with it; Read after signal
// fails.
type verifier struct {
	want digest.Digest
	what string

	filled chan chunk  // chunks read and hashed, in order
	free   chan []byte // buffers back from the consumer
	done   chan struct{}
	wg     sync.WaitGroup
	once   sync.Once

	cur  []byte // unread part of the chunk being consumed
	buf  []byte // that chunk's whole buffer, to give back
	tail error  // the error that came with that chunk, due after it
	err  error  // sticky: the error that ended the stream
}

type chunk struct {
	b   []byte
	err error // io.EOF, a digest mismatch or a read error, after b
}

// errStopped is what Read returns after stop.
var errStopped = fmt.Errorf("imgsrc: read after the layer was closed: %w", io.ErrClosedPipe)

func newVerifier(ctx context.Context, r io.Reader, want digest.Digest, what string) (*verifier, error) {
	if err := want.Validate(); err != nil {
		return nil, fmt.Errorf("%s %q: %w", what, want, err)
	}
	v := &verifier{
		want:   want,
		what:   what,
		filled: make(chan chunk, chunks),
		free:   make(chan []byte, chunks),
		done:   make(chan struct{}),
	}
	for range chunks {
		v.free <- make([]byte, chunkSize)
	}
	v.wg.Add(1)
	go v.fill(ctx, r, want.Algorithm().Hash())
	return v, nil
}

// fill runs on the verifier's goroutine: read, hash, hand over.
func (v *verifier) fill(ctx context.Context, r io.Reader, h hash.Hash) {
	defer v.wg.Done()
	for {
		var b []byte
		select {
		case b = <-v.free:
		case <-v.done:
			return
		}
		var err error
		if err = ctx.Err(); err == nil {
			var n int
			n, err = io.ReadFull(r, b)
			b = b[:n]
			h.Write(b)
			switch err {
			case nil:
			case io.EOF, io.ErrUnexpectedEOF:
				err = io.EOF
				if got := digest.NewDigest(v.want.Algorithm(), h); got != v.want {
					err = fmt.Errorf("%s %s: %w: content hashes to %s", v.what, v.want, ErrDigestMismatch, got)
				}
			default:
				err = fmt.Errorf("reading %s %s: %w", v.what, v.want, err)
			}
		}
		select {
		case v.filled <- chunk{b, err}:
		case <-v.done:
			return
		}
		if err != nil {
			return
		}
	}
}

func (v *verifier) Read(p []byte) (int, error) {
	for len(v.cur) == 0 {
		if v.err != nil {
			return 0, v.err
		}
		if v.tail != nil {
			v.err = v.tail
			return 0, v.err
		}
		if v.buf != nil {
			v.free <- v.buf[:cap(v.buf)]
			v.buf = nil
		}
		select {
		case c := <-v.filled:
			v.cur, v.buf, v.tail = c.b, c.b, c.err
		case <-v.done:
			v.err = errStopped
		}
	}
	n := copy(p, v.cur)
	v.cur = v.cur[n:]
	return n, nil
}

// signal asks the read-ahead goroutine to end, without waiting: it may be
// blocked reading its source, which the caller closes next.
func (v *verifier) signal() { v.once.Do(func() { close(v.done) }) }

// wait waits for the read-ahead goroutine to end, after signal.
func (v *verifier) wait() { v.wg.Wait() }
