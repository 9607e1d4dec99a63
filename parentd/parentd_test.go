package parentd_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/enclave-storage/enclave-storage/nbd"
	"github.com/enclave-storage/enclave-storage/nbd/nbdconfig"
	"github.com/enclave-storage/enclave-storage/nbd/nbdtest"
	"github.com/enclave-storage/enclave-storage/parentd"
)

// TestServeAndStop serves a bound run export on a "vsock" listener (TCP
// standing in, peer CID 16), with an extra handler on the metrics server;
// a write is on disk after the daemon stops, and a second daemon on the
// same file is refused while the first runs.
func TestServeAndStop(t *testing.T) {
	dir := t.TempDir()
	img := filepath.Join(dir, "run.img")
	cfg := &nbdconfig.Config{
		Listen:      []string{"vsock://:10809"},
		MetricsAddr: "127.0.0.1:0",
		Exports:     []nbdconfig.Export{{Name: "run", Path: img, Size: 1 << 20, CIDs: []uint32{16}}},
	}
	var addr string
	listen := func(ctx context.Context, a nbdconfig.Addr) (net.Listener, error) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		addr = l.Addr().String()
		return nbdtest.CIDListener{Listener: l, CID: 16}, nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	d, err := parentd.Start(ctx, cfg, parentd.Options{Listen: listen,
		Handlers: map[string]http.Handler{"/hello": http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "hi") })}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := parentd.Start(ctx, cfg, parentd.Options{Listen: listen}); !errors.Is(err, nbd.ErrLocked) {
		t.Errorf("second daemon on the same file: %v, want nbd.ErrLocked", err)
	}
	for path, want := range map[string]string{"/hello": "hi", "/metrics": "nbd_"} {
		resp, err := http.Get("http://" + d.MetricsAddr().String() + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(b), want) {
			t.Errorf("GET %s: %q lacks %q", path, b, want)
		}
	}
	c, err := nbdtest.Dial(ctx, "tcp", addr, "run")
	if err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("enclave!"), 512)
	if err := c.WriteAt(ctx, data, 4096, 0); err != nil {
		t.Fatal(err)
	}
	cancel()
	<-d.Done()
	if err := d.Wait(); err != nil {
		t.Fatalf("Wait: %v", err)
	}
	c.Close()
	got, _ := os.ReadFile(img)
	if !bytes.Equal(got[4096:4096+len(data)], data) {
		t.Error("write missing after the daemon stopped")
	}
	// The lock is released with the files.
	ctx2, cancel2 := context.WithCancel(context.Background())
	d2, err := parentd.Start(ctx2, &nbdconfig.Config{Listen: []string{"tcp://127.0.0.1:0"}, Exports: []nbdconfig.Export{{Name: "run", Path: img, Size: 1 << 20}}}, parentd.Options{})
	if err != nil {
		t.Fatalf("restart on the same file: %v", err)
	}
	cancel2()
	if err := d2.Wait(); err != nil {
		t.Fatal(err)
	}
}
