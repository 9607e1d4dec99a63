//go:build linux

package nbdkernel

import (
	"bytes"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestRelay copies both ways through the relay, as the kernel and the
// server would, and checks a close on either side ends it.
func TestRelay(t *testing.T) {
	for _, closeSide := range []string{"server", "kernel"} {
		t.Run(closeSide+" closes", func(t *testing.T) {
			client, server := net.Pipe()
			r, err := NewRelay(client)
			if err != nil {
				t.Fatal(err)
			}
			f := os.NewFile(uintptr(r.KernelFD()), "kernel end")
			kernel, err := net.FileConn(f)
			f.Close()
			r.kernel = -1 // f owned it
			if err != nil {
				t.Fatal(err)
			}
			req := bytes.Repeat([]byte("request "), 10000)
			go kernel.Write(req)
			got := make([]byte, len(req))
			if _, err := io.ReadFull(server, got); err != nil || !bytes.Equal(got, req) {
				t.Fatalf("server read %d bytes, %v", len(got), err)
			}
			reply := bytes.Repeat([]byte("reply "), 20000)
			go server.Write(reply)
			got = make([]byte, len(reply))
			if _, err := io.ReadFull(kernel, got); err != nil || !bytes.Equal(got, reply) {
				t.Fatalf("kernel read %d bytes, %v", len(got), err)
			}
			if closeSide == "server" {
				server.Close()
				kernel.SetReadDeadline(time.Now().Add(10 * time.Second))
				if _, err := kernel.Read(make([]byte, 1)); err != io.EOF {
					t.Fatalf("kernel end after the server closed: %v, want EOF", err)
				}
				kernel.Close()
			} else {
				kernel.Close()
				server.SetReadDeadline(time.Now().Add(10 * time.Second))
				if _, err := server.Read(make([]byte, 1)); err != io.EOF && err != io.ErrClosedPipe {
					t.Fatalf("server after the kernel closed: %v, want EOF", err)
				}
			}
			select {
			case <-r.Done():
			case <-time.After(10 * time.Second):
				t.Fatal("relay still running after one side closed")
			}
			if err := r.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
		})
	}
}

// BenchmarkRelay measures the relay's userspace copy: bytes written on the
// kernel's end and read from the upstream connection, through the relay
// ("relay") and, for reference, over a plain UNIX socket pair ("direct").
func BenchmarkRelay(b *testing.B) {
	const chunk = 1 << 20
	buf := make([]byte, chunk)
	run := func(b *testing.B, w io.Writer, r io.Reader) {
		b.SetBytes(chunk)
		done := make(chan error, 1)
		go func() {
			_, err := io.CopyN(io.Discard, r, int64(b.N)*chunk)
			done <- err
		}()
		for range b.N {
			if _, err := w.Write(buf); err != nil {
				b.Fatal(err)
			}
		}
		if err := <-done; err != nil {
			b.Fatal(err)
		}
	}
	pair := func(b *testing.B) (net.Conn, net.Conn) {
		a, c, err := socketPair()
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { a.Close(); c.Close() })
		return a, c
	}
	b.Run("direct", func(b *testing.B) {
		k, s := pair(b)
		run(b, k, s)
	})
	b.Run("relay", func(b *testing.B) {
		up, server := pair(b) // stands in for the vsock connection
		r, err := NewRelay(up)
		if err != nil {
			b.Fatal(err)
		}
		defer r.Close()
		f := os.NewFile(uintptr(r.KernelFD()), "kernel end")
		k, err := net.FileConn(f)
		f.Close()
		r.kernel = -1
		if err != nil {
			b.Fatal(err)
		}
		defer k.Close()
		run(b, k, server)
	})
	// socat is the usual tool for the same job (a userspace relay between
	// two stream sockets), measured in the same run for comparison.
	b.Run("socat", func(b *testing.B) {
		bin, err := exec.LookPath("socat")
		if err != nil {
			b.Skip("socat not installed (apt-get install socat)")
		}
		dir := b.TempDir()
		in, out := filepath.Join(dir, "in.sock"), filepath.Join(dir, "out.sock")
		l, err := net.Listen("unix", out)
		if err != nil {
			b.Fatal(err)
		}
		defer l.Close()
		cmd := exec.Command(bin, "-b", "1048576", "UNIX-LISTEN:"+in, "UNIX-CONNECT:"+out)
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		defer func() { cmd.Process.Kill(); cmd.Wait() }()
		var k net.Conn
		for range 200 {
			if k, err = net.Dial("unix", in); err == nil {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		if err != nil {
			b.Fatalf("socat never listened: %v", err)
		}
		defer k.Close()
		server, err := l.Accept()
		if err != nil {
			b.Fatal(err)
		}
		defer server.Close()
		run(b, k, server)
	})
}
