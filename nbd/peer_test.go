package nbd

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/enclave-storage/enclave-storage/internal/syncbuf"
	"github.com/enclave-storage/enclave-storage/nbd/nbdtest"
	"github.com/enclave-storage/enclave-storage/nbdclient"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// peerServer serves "run" bound to CID 16 (the default export), "shared"
// bound to CIDs 16 and 17, and "image" open to all, to vsock peers of
// CIDs 16, 17 and 18 and to a plain TCP peer. It returns the TCP address
// each peer dials, by name.
type peerServer struct {
	addrs   map[string]string
	metrics *Metrics
	log     *syncbuf.Buffer
}

func startPeerServer(t *testing.T) *peerServer {
	t.Helper()
	ps := &peerServer{addrs: map[string]string{}, log: &syncbuf.Buffer{}}
	var err error
	if ps.metrics, err = NewMetrics(prometheus.NewRegistry()); err != nil {
		t.Fatal(err)
	}
	srv, err := NewServer([]*Export{
		{Name: "run", Backend: &memBackend{data: make([]byte, 1<<20)}, PeerCIDs: []uint32{16}},
		{Name: "shared", Backend: &memBackend{data: make([]byte, 1<<20)}, PeerCIDs: []uint32{16, 17}},
		{Name: "image", Backend: &memBackend{data: make([]byte, 1<<20)}, ReadOnly: true},
	}, Options{DefaultExport: "run", Metrics: ps.metrics,
		Logger: slog.New(slog.NewTextHandler(ps.log, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	for name, cid := range map[string]uint32{"cid16": 16, "cid17": 17, "cid18": 18, "tcp": 0} {
		tl, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ps.addrs[name] = tl.Addr().String()
		var l net.Listener = tl
		if cid != 0 {
			l = nbdtest.CIDListener{Listener: tl, CID: cid}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := srv.Serve(ctx, l); err != nil {
				t.Errorf("Serve: %v", err)
			}
		}()
	}
	return ps
}

// TestPeerCID checks that an export bound to CIDs is listed and given
// only to vsock peers of those CIDs, through the enclave's own handshake
// client, and that unbound exports stay open to every peer.
func TestPeerCID(t *testing.T) {
	ps := startPeerServer(t)
	tests := []struct {
		peer    string
		visible []string // listed and given, in configuration order
	}{
		{"cid16", []string{"run", "shared", "image"}},
		{"cid17", []string{"shared", "image"}},
		{"cid18", []string{"image"}},
		{"tcp", []string{"image"}}, // no CID: bound exports are refused
	}
	refusals := 0
	for _, tt := range tests {
		t.Run(tt.peer, func(t *testing.T) {
			addr := ps.addrs[tt.peer]
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			names, err := nbdtest.List(testCtx(t), conn)
			conn.Close()
			if err != nil || !slices.Equal(names, tt.visible) {
				t.Errorf("NBD_OPT_LIST: %q, %v; want %q", names, err, tt.visible)
			}
			// "" asks for the default export, "run".
			for _, name := range []string{"run", "shared", "image", ""} {
				want := slices.Contains(tt.visible, name) || name == "" && slices.Contains(tt.visible, "run")
				ctx := testCtx(t)
				c, err := nbdtest.Dial(ctx, "tcp", addr, name)
				if !want {
					if !errors.Is(err, nbdclient.ErrUnknownExport) {
						t.Errorf("export %q: %v, want the reply to an unknown export", name, err)
					}
					if err == nil {
						c.Close()
					}
					refusals++
					continue
				}
				if err != nil {
					t.Errorf("export %q: %v", name, err)
					continue
				}
				if name != "image" {
					data := randomBytes(t, 4096)
					got := make([]byte, len(data))
					if err := c.WriteAt(ctx, data, 8192, nbdtest.FlagFUA); err != nil {
						t.Errorf("export %q: write: %v", name, err)
					} else if err := c.ReadAt(ctx, got, 8192); err != nil || !bytes.Equal(got, data) {
						t.Errorf("export %q: read back: %v", name, err)
					}
				}
				c.Close()
			}
		})
	}
	// NBD_OPT_EXPORT_NAME has no error reply: the server hangs up.
	c := rawConn(t, ps.addrs["cid17"], flagFixedNewstyle|flagNoZeroes)
	nbdtest.SendOption(c, optExportName, []byte("run"))
	expectClosed(t, c)
	refusals++

	var got float64
	for _, name := range []string{"run", "shared"} {
		got += testutil.ToFloat64(ps.metrics.refused.WithLabelValues(name))
	}
	if got != float64(refusals) {
		t.Errorf("nbd_peer_refused_total: %v, want %d", got, refusals)
	}
	if n := testutil.ToFloat64(ps.metrics.refused.WithLabelValues("image")); n != 0 {
		t.Errorf("nbd_peer_refused_total{export=image}: %v, want 0", n)
	}
	log := ps.log.String()
	for _, want := range []string{
		`msg="export refused to peer" export=run peer_cid=17`,
		`msg="export refused to peer" export=shared peer_cid=18`,
		`msg="export refused to a peer without a vsock CID" export=run remote=127.0.0.1:`,
	} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
}

// TestPeerCIDNbdinfo checks the binding with libnbd's nbdinfo as the
// other peer's client: the export is neither listed to it nor opened.
func TestPeerCIDNbdinfo(t *testing.T) {
	needTool(t, "nbdinfo")
	ps := startPeerServer(t)
	out, err := runTool(t, "nbdinfo", "--list", "nbd://"+ps.addrs["cid17"])
	if err != nil || !strings.Contains(out, `export="shared"`) || !strings.Contains(out, `export="image"`) || strings.Contains(out, `export="run"`) {
		t.Errorf("nbdinfo --list as CID 17: %v; want shared and image, not run:\n%s", err, out)
	}
	if out, err := runTool(t, "nbdinfo", "nbd://"+ps.addrs["cid17"]+"/run"); err == nil {
		t.Errorf("nbdinfo as CID 17 opened run:\n%s", out)
	}
	if out, err := runTool(t, "nbdinfo", "--size", "nbd://"+ps.addrs["cid16"]+"/run"); err != nil || strings.TrimSpace(out) != "1048576" {
		t.Errorf("nbdinfo --size as CID 16: %q, %v; want 1048576", out, err)
	}
}
