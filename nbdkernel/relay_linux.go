//go:build linux

package nbdkernel

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// A Relay bridges a connection the kernel NBD client refuses (vsock: since
// the stable backports of "nbd: restrict sockets to TCP and UDP", Linux
// accepts only TCP and stream UNIX sockets and logs "Unsupported socket:
// should be TCP or UNIX") to one it accepts: it makes an AF_UNIX stream
// socket pair, gives one end to the kernel and copies bytes between the
// other end and the original connection in two goroutines. It costs one
// copy per byte in userspace; Connect with the original socket first and
// fall back to a Relay when the kernel answers EINVAL.
//
// When either side closes or fails, the relay closes both, so the kernel
// sees its connection die (and can be given a new one with Reconfigure),
// and a disconnect by the kernel closes the upstream connection.
type Relay struct {
	kernel int // the kernel's end, until CloseKernelEnd
	ours   *net.UnixConn
	up     net.Conn
	done   chan struct{}
	once   sync.Once
	err    error
}

// NewRelay starts relaying up. up must be in the transmission phase (after
// the handshake); the relay owns it from now on.
func NewRelay(up net.Conn) (*Relay, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("nbdkernel: relay socket pair: %w", err)
	}
	f := os.NewFile(uintptr(fds[1]), "nbd-relay")
	c, err := net.FileConn(f) // dups the descriptor
	f.Close()
	if err != nil {
		unix.Close(fds[0])
		return nil, fmt.Errorf("nbdkernel: relay socket: %w", err)
	}
	r := &Relay{kernel: fds[0], ours: c.(*net.UnixConn), up: up, done: make(chan struct{})}
	var wg sync.WaitGroup
	wg.Add(2)
	go r.pump(&wg, r.up, r.ours)
	go r.pump(&wg, r.ours, r.up)
	go func() {
		wg.Wait()
		close(r.done)
	}()
	return r, nil
}

// relayBuffer is the copy buffer of each direction: NBD requests and
// replies run to megabytes, and io.Copy's 32 KiB would cost a system call
// pair per 32 KiB.
const relayBuffer = 1 << 20

// pump copies src to dst until either fails, then shuts both sides. The
// wrappers hide ReadFrom/WriteTo so that CopyBuffer uses our buffer.
func (r *Relay) pump(wg *sync.WaitGroup, dst io.Writer, src io.Reader) {
	defer wg.Done()
	_, err := io.CopyBuffer(struct{ io.Writer }{dst}, struct{ io.Reader }{src}, make([]byte, relayBuffer))
	r.stop(err)
}

func (r *Relay) stop(err error) {
	r.once.Do(func() {
		if err != nil && !errors.Is(err, net.ErrClosed) {
			r.err = err
		}
		r.ours.Close()
		r.up.Close()
	})
}

// KernelFD is the descriptor to pass in Config.Sockets.
func (r *Relay) KernelFD() int { return r.kernel }

// CloseKernelEnd closes our copy of the kernel's end once the kernel holds
// its own reference (after Connect or Reconfigure), or after a failure.
func (r *Relay) CloseKernelEnd() error {
	if r.kernel < 0 {
		return nil
	}
	err := unix.Close(r.kernel)
	r.kernel = -1
	return err
}

// Close stops relaying and closes both connections.
func (r *Relay) Close() error {
	r.stop(nil)
	err := r.CloseKernelEnd()
	<-r.done
	return err
}

// Done is closed when the relay has stopped.
func (r *Relay) Done() <-chan struct{} { return r.done }

// Err reports why the relay stopped (nil for an orderly close or EOF).
func (r *Relay) Err() error {
	<-r.done
	return r.err
}
