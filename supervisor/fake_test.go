package supervisor_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/enclave-storage/enclave-storage/nbd/nbdconfig"
	"github.com/enclave-storage/enclave-storage/nbd/nbdtest"
	"github.com/enclave-storage/enclave-storage/nitrocli"
	"github.com/enclave-storage/enclave-storage/supervisor"
)

// stopMode is how the fake enclave answers a stop request.
type stopMode int

const (
	stopClean  stopMode = iota // stopping, app-exited 143, down clean
	stopIgnore                 // nothing: it must be terminated
	stopBroken                 // down with clean=false
)

// fakeEnclave is nitro-cli and nbd-enclave's control channel for one
// enclave, following what their sources say they do: run-enclave answers
// once the enclave runs, describe-enclaves lists it until it ends, the
// control channel says hello, reports app-exited and down, and the
// enclave ends after down.
type fakeEnclave struct {
	mu         sync.Mutex
	runErr     error
	reportCID  uint64 // run-enclave's EnclaveCID; 0: the one asked for
	mode       stopMode
	started    bool
	listed     bool
	events     chan supervisor.Event
	closed     bool
	calls      []string
	runOpts    nitrocli.RunOptions
	stopGrace  time.Duration
	noControl  bool // the control channel never answers
	consoleOut string
}

func newFakeEnclave() *fakeEnclave {
	return &fakeEnclave{events: make(chan supervisor.Event, 16), consoleOut: "Linux version 6.1.0\nhello from the enclave\n"}
}

const fakeID = "i-abc12345def67890a-enc9876abcd543210ef12"

func (f *fakeEnclave) call(c string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, c)
}

func (f *fakeEnclave) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

func (f *fakeEnclave) RunEnclave(ctx context.Context, o nitrocli.RunOptions) (nitrocli.RunInfo, error) {
	f.call("run-enclave")
	f.mu.Lock()
	defer f.mu.Unlock()
	f.runOpts = o
	if f.runErr != nil {
		return nitrocli.RunInfo{}, f.runErr
	}
	f.started, f.listed = true, true
	cid := f.reportCID
	if cid == 0 {
		cid = uint64(o.CID)
	}
	return nitrocli.RunInfo{EnclaveID: fakeID, ProcessID: 4242, EnclaveCID: cid, NumberOfCPUs: uint64(o.CPUCount), CPUIDs: []uint32{1, 3}, MemoryMiB: o.MemoryMiB}, nil
}

func (f *fakeEnclave) DescribeEnclaves(ctx context.Context) ([]nitrocli.EnclaveInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.listed {
		return []nitrocli.EnclaveInfo{}, nil
	}
	return []nitrocli.EnclaveInfo{{RunInfo: nitrocli.RunInfo{EnclaveID: fakeID, EnclaveCID: uint64(f.runOpts.CID)}, State: nitrocli.StateRunning, Flags: "NONE"}}, nil
}

func (f *fakeEnclave) TerminateEnclave(ctx context.Context, id string) (nitrocli.TerminateInfo, error) {
	f.call("terminate-enclave")
	f.mu.Lock()
	defer f.mu.Unlock()
	if id != fakeID || !f.listed {
		return nitrocli.TerminateInfo{}, &nitrocli.CommandError{Command: "terminate-enclave", ExitStatus: 39, Code: "E39", Message: "[ E39 ] Enclave process connection failure."}
	}
	f.end()
	return nitrocli.TerminateInfo{EnclaveID: id, Terminated: true}, nil
}

func (f *fakeEnclave) Console(ctx context.Context, id string, w io.Writer) error {
	f.call("console")
	_, err := io.WriteString(w, f.consoleOut)
	<-ctx.Done()
	return err
}

// end makes the enclave leave the list and closes its control channel;
// f.mu is held.
func (f *fakeEnclave) end() {
	f.listed = false
	if !f.closed {
		f.closed = true
		close(f.events)
	}
}

// appExit is the application exiting by itself: nbd-enclave tears down,
// reports, and the enclave ends.
func (f *fakeEnclave) appExit(status int, clean bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.events <- supervisor.Event{Event: "app-exited", Status: &status}
	f.events <- supervisor.Event{Event: "down", Status: &status, Clean: clean}
	f.end()
}

// vanish is the enclave crashing or terminated by someone else.
func (f *fakeEnclave) vanish() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.end()
}

func (f *fakeEnclave) dial(ctx context.Context, cid uint32) (supervisor.Controller, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.started || f.noControl || cid != f.runOpts.CID {
		return nil, errors.New("connection refused")
	}
	f.calls = append(f.calls, "dial")
	return &fakeController{f: f, hello: true}, nil
}

type fakeController struct {
	f     *fakeEnclave
	hello bool
}

func (c *fakeController) Stop(ctx context.Context, grace time.Duration) error {
	f := c.f
	f.call("stop")
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stopGrace = grace
	if f.closed {
		return io.EOF
	}
	status := 143 // the application's exit after SIGTERM, as a shell reports it
	switch f.mode {
	case stopClean:
		f.events <- supervisor.Event{Event: "stopping"}
		f.events <- supervisor.Event{Event: "app-exited", Status: &status}
		f.events <- supervisor.Event{Event: "down", Status: &status, Clean: true}
		f.end()
	case stopBroken:
		f.events <- supervisor.Event{Event: "stopping"}
		f.events <- supervisor.Event{Event: "down", Status: &status, Error: "umount /run: device busy"}
		f.end()
	}
	return nil
}

func (c *fakeController) Next(ctx context.Context) (supervisor.Event, error) {
	if c.hello {
		c.hello = false
		return supervisor.Event{Event: "hello", Version: 1}, nil
	}
	select {
	case ev, ok := <-c.f.events:
		if !ok {
			return supervisor.Event{}, io.EOF
		}
		return ev, nil
	case <-ctx.Done():
		return supervisor.Event{}, ctx.Err()
	}
}

func (c *fakeController) Close() error { return nil }

// peers stands TCP listeners in for vsock: port 10809 is the enclave's
// (its connections come from CID 16) and port 10810 another enclave's on
// the same parent (CID 17). addrs maps the CID to the TCP address.
type peers struct {
	mu    sync.Mutex
	addrs map[uint32]string
}

func (p *peers) listen(ctx context.Context, a nbdconfig.Addr) (net.Listener, error) {
	cid := map[uint32]uint32{10809: 16, 10810: 17}[a.Port]
	if a.Network != "vsock" || cid == 0 {
		return nil, fmt.Errorf("test listens on vsock ports 10809 and 10810 only, not %s", a)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.addrs == nil {
		p.addrs = map[uint32]string{}
	}
	p.addrs[cid] = l.Addr().String()
	return nbdtest.CIDListener{Listener: l, CID: cid}, nil
}

func (p *peers) addr(cid uint32) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.addrs[cid]
}

// nbdDial opens a TCP connection to addr.
func nbdDial(addr string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(context.Background(), "tcp", addr)
}
