package nbdclient

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/enclave-storage/enclave-storage/nbd"
)

// TestOurServer negotiates with the project's own NBD server (package nbd),
// the one nbd-parent runs, including block size information and a read in
// the transmission phase.
func TestOurServer(t *testing.T) {
	img, data := testdataImage(t)
	f, err := nbd.OpenFile(img, nbd.FileOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	run := filepath.Join(t.TempDir(), "run.img")
	rf, err := nbd.OpenFile(run, nbd.FileOptions{Size: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer rf.Close()
	srv, err := nbd.NewServer([]*nbd.Export{
		{Name: "image", Backend: f, ReadOnly: true},
		{Name: "run", Backend: rf},
	}, nbd.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	tests := []struct {
		export   string
		readOnly bool
	}{{"image", true}, {"run", false}}
	for _, tt := range tests {
		client, server := net.Pipe()
		go srv.ServeConn(ctx, server)
		exp, err := Handshake(ctx, client, tt.export)
		if err != nil {
			t.Fatalf("Handshake(%s): %v", tt.export, err)
		}
		if exp.Size != 1<<20 || exp.ReadOnly() != tt.readOnly || exp.UsedExportName || exp.BlockSize.Preferred == 0 {
			t.Fatalf("export %+v", exp)
		}
		if tt.export == "image" {
			if got := readBlock(t, client, 4096, 4096); !bytes.Equal(got, data[4096:8192]) {
				t.Fatal("read after handshake differs")
			}
		}
		client.Close()
	}

	client, server := net.Pipe()
	defer client.Close()
	go srv.ServeConn(ctx, server)
	if _, err := Handshake(ctx, client, "missing"); !errors.Is(err, ErrUnknownExport) {
		t.Fatalf("Handshake for a missing export: %v, want ErrUnknownExport", err)
	}
	if _, err := os.Stat(run); err != nil {
		t.Fatal(err)
	}
}
