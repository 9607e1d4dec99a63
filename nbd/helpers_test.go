package nbd

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/enclave-storage/enclave-storage/nbd/nbdtest"
)

// memBackend is an in-memory Backend for tests that need no file.
type memBackend struct {
	mu   sync.Mutex
	data []byte
	// gate, if set, is called before every read with its offset.
	gate  func(off int64)
	syncs int
}

func (m *memBackend) ReadAt(p []byte, off int64) (int, error) {
	if m.gate != nil {
		m.gate(off)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return copy(p, m.data[off:]), nil
}

func (m *memBackend) WriteAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if off+int64(len(p)) > int64(len(m.data)) {
		return 0, errors.New("memBackend: write past end")
	}
	return copy(m.data[off:], p), nil
}

func (m *memBackend) Size() int64 { return int64(len(m.data)) }
func (m *memBackend) Sync() error {
	m.mu.Lock()
	m.syncs++
	m.mu.Unlock()
	return nil
}
func (m *memBackend) Trim(off, n int64) error { return m.Zero(off, n, false) }
func (m *memBackend) Zero(off, n int64, _ bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	clear(m.data[off : off+n])
	return nil
}

// fixture is a running server with a read-write export "run" (a sparse
// file) and a read-only export "image" (random bytes), on TCP and unix.
type fixture struct {
	srv        *Server
	tcp, unix  string
	runPath    string
	imagePath  string
	imageBytes []byte
	cancel     context.CancelFunc
	done       chan error
}

// addr is the fixture's address on network ("tcp" or "unix").
func (f *fixture) addr(network string) string {
	if network == "unix" {
		return f.unix
	}
	return f.tcp
}

const (
	runSize   = 8 << 20
	imageSize = 1 << 20
)

func randomBytes(t testing.TB, n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func startFixture(t *testing.T, opts Options, rwSize int64) *fixture {
	t.Helper()
	dir := t.TempDir()
	f := &fixture{runPath: filepath.Join(dir, "run.img"), imagePath: filepath.Join(dir, "image.img")}
	f.imageBytes = randomBytes(t, imageSize)
	if err := os.WriteFile(f.imagePath, f.imageBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	run, err := OpenFile(f.runPath, FileOptions{Size: rwSize})
	if err != nil {
		t.Fatal(err)
	}
	img, err := OpenFile(f.imagePath, FileOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if opts.DefaultExport == "" {
		opts.DefaultExport = "run"
	}
	f.srv, err = NewServer([]*Export{
		{Name: "run", Description: "run volume", Backend: run},
		{Name: "image", Backend: img, ReadOnly: true},
	}, opts)
	if err != nil {
		t.Fatal(err)
	}
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.unix = filepath.Join(dir, "nbd.sock")
	ul, err := net.Listen("unix", f.unix)
	if err != nil {
		t.Fatal(err)
	}
	f.tcp = tl.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	f.cancel = cancel
	f.done = make(chan error, 2)
	go func() { f.done <- f.srv.Serve(ctx, tl) }()
	go func() { f.done <- f.srv.Serve(ctx, ul) }()
	t.Cleanup(func() {
		f.stop(t)
		run.Close()
		img.Close()
	})
	return f
}

// stop cancels the servers and waits for both Serve calls.
func (f *fixture) stop(t *testing.T) {
	if f.cancel == nil {
		return
	}
	f.cancel()
	f.cancel = nil
	for range 2 {
		select {
		case err := <-f.done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("Serve did not return after cancel")
		}
	}
}

func dial(t *testing.T, addr, export string) *nbdtest.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := nbdtest.Dial(ctx, "tcp", addr, export)
	if err != nil {
		t.Fatalf("dial %s export %q: %v", addr, export, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// exerciseFileExport writes and reads back through c, then keeps many
// reads in flight, small (answered inline) and large (workers), so that
// replies are batched; the export must be a File of at least 4 MiB.
func exerciseFileExport(t *testing.T, c *nbdtest.Client) {
	data := randomBytes(t, 128<<10)
	if err := c.WriteAt(testCtx(t), data, 4096, nbdtest.FlagFUA); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(data))
	if err := c.ReadAt(testCtx(t), got, 4096); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read back over vsock: %v", err)
	}
	big := randomBytes(t, 2<<20)
	if err := c.WriteAt(testCtx(t), big, 1<<20, 0); err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 32)
	for i := range 32 {
		go func() {
			n, off := 4096, 1<<20+i*8192
			if i%4 == 0 {
				n, off = 512<<10, 1<<20+i*1024
			}
			b := make([]byte, n)
			err := c.ReadAt(testCtx(t), b, uint64(off))
			if err == nil && !bytes.Equal(b, big[off-1<<20:off-1<<20+n]) {
				err = errors.New("wrong data over vsock")
			}
			errs <- err
		}()
	}
	for range 32 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}
