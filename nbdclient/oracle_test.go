package nbdclient

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// readBlock sends one NBD_CMD_READ in the transmission phase and returns the
// data of the simple reply, proving the handshake left the connection where
// the kernel expects it.
func readBlock(t *testing.T, conn net.Conn, off uint64, n uint32) []byte {
	t.Helper()
	req := binary.BigEndian.AppendUint32(nil, 0x25609513) // NBD_REQUEST_MAGIC
	req = binary.BigEndian.AppendUint16(req, 0)           // command flags
	req = binary.BigEndian.AppendUint16(req, 0)           // NBD_CMD_READ
	req = binary.BigEndian.AppendUint64(req, 0xc0ffee)    // cookie
	req = binary.BigEndian.AppendUint64(req, off)
	req = binary.BigEndian.AppendUint32(req, n)
	if _, err := conn.Write(req); err != nil {
		t.Fatalf("sending NBD_CMD_READ: %v", err)
	}
	var rep [16]byte
	if _, err := io.ReadFull(conn, rep[:]); err != nil {
		t.Fatalf("reading reply: %v", err)
	}
	if m := binary.BigEndian.Uint32(rep[:]); m != 0x67446698 {
		t.Fatalf("reply magic %#x, want simple reply", m)
	}
	if e := binary.BigEndian.Uint32(rep[4:]); e != 0 {
		t.Fatalf("NBD_CMD_READ error %d", e)
	}
	if c := binary.BigEndian.Uint64(rep[8:]); c != 0xc0ffee {
		t.Fatalf("reply cookie %#x", c)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(conn, b); err != nil {
		t.Fatalf("reading data: %v", err)
	}
	return b
}

// startServer runs cmd and waits for the unix socket sock to accept.
func startServer(t *testing.T, cmd *exec.Cmd, sock string) {
	t.Helper()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", cmd.Path, err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	for range 200 {
		if c, err := net.Dial("unix", sock); err == nil {
			c.Close()
			return
		}
		time.Sleep(25 * time.Millisecond)
	}
	t.Fatalf("%s never listened on %s: %s", cmd.Path, sock, stderr.String())
}

func dial(t *testing.T, sock string) net.Conn {
	t.Helper()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func testdataImage(t *testing.T) (string, []byte) {
	t.Helper()
	data := make([]byte, 1<<20)
	for i := range data {
		data[i] = byte(i*7 + i>>12)
	}
	path := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path, data
}

// TestNbdkit negotiates with nbdkit's file plugin, read-only, and reads a
// block back in the transmission phase.
func TestNbdkit(t *testing.T) {
	bin, err := exec.LookPath("nbdkit")
	if err != nil {
		t.Skip("nbdkit not installed (apt-get install nbdkit)")
	}
	img, data := testdataImage(t)
	sock := filepath.Join(t.TempDir(), "nbd.sock")
	startServer(t, exec.Command(bin, "--foreground", "--exit-with-parent", "--readonly",
		"-U", sock, "file", img), sock)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn := dial(t, sock)
	exp, err := Handshake(ctx, conn, "")
	if err != nil {
		t.Fatalf("Handshake with nbdkit: %v", err)
	}
	if exp.Size != uint64(len(data)) || !exp.ReadOnly() || exp.UsedExportName {
		t.Fatalf("export %+v: want size %d, read-only, via NBD_OPT_GO", exp, len(data))
	}
	if exp.BlockSize.Minimum == 0 {
		t.Logf("nbdkit sent no NBD_INFO_BLOCK_SIZE")
	}
	if got := readBlock(t, conn, 8192, 4096); !bytes.Equal(got, data[8192:8192+4096]) {
		t.Fatal("block read after handshake differs from the file")
	}
}

// nbdServer starts the reference nbd-server in the foreground for exactly
// one connection (its -d mode serves one client and exits) and returns that
// connection.
func nbdServer(t *testing.T, bin, img string) net.Conn {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	conf := filepath.Join(t.TempDir(), "config")
	cfg := fmt.Sprintf("[generic]\nlistenaddr = 127.0.0.1\nport = %d\n[image]\nexportname = %s\nreadonly = true\n", port, img)
	if err := os.WriteFile(conf, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-d", "-C", conf)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting nbd-server: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	for range 200 {
		if c, err := net.Dial("tcp", addr); err == nil {
			t.Cleanup(func() { c.Close() })
			return c
		}
		time.Sleep(25 * time.Millisecond)
	}
	t.Fatalf("nbd-server never listened on %s: %s", addr, stderr.String())
	return nil
}

// TestNbdServer negotiates with the reference nbd-server, including an
// unknown export name.
func TestNbdServer(t *testing.T) {
	bin, err := exec.LookPath("nbd-server")
	if err != nil {
		t.Skip("nbd-server not installed (apt-get install nbd-server)")
	}
	img, data := testdataImage(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	conn := nbdServer(t, bin, img)
	exp, err := Handshake(ctx, conn, "image")
	if err != nil {
		t.Fatalf("Handshake with nbd-server: %v", err)
	}
	if exp.Size != uint64(len(data)) || !exp.ReadOnly() {
		t.Fatalf("export %+v: want size %d, read-only", exp, len(data))
	}
	if got := readBlock(t, conn, 0, 512); !bytes.Equal(got, data[:512]) {
		t.Fatal("block read after handshake differs from the file")
	}

	_, err = Handshake(ctx, nbdServer(t, bin, img), "missing")
	if !errors.Is(err, ErrUnknownExport) {
		t.Fatalf("Handshake for a missing export: %v, want ErrUnknownExport", err)
	}
}
