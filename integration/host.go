package integration

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"time"
)

// Host runs the test binaries directly on this machine, the way /init runs
// them in the VM: for a privileged Linux host or container
// (docker run --privileged) whose kernel already has the modules loaded.
type Host struct {
	// Tests maps a test name to a test binary; they run in name order, in
	// their package directory like under go test.
	Tests map[string]TestBinary
	// TestArgs are passed to every test binary after -test.v.
	TestArgs []string
	// OutDir is the artifact directory tests see as itest.OutDir.
	OutDir string
}

// Run runs every test binary, copying their output to console when it is
// not nil. Test failures are in the Report; the error is for binaries that
// could not be started or a cancelled ctx.
func (h *Host) Run(ctx context.Context, console io.Writer) (Report, error) {
	if console == nil {
		console = io.Discard
	}
	start := time.Now()
	rep := Report{Done: true}
	for _, name := range sortedKeys(h.Tests) {
		tb := h.Tests[name]
		cmd := exec.CommandContext(ctx, tb.Path, append([]string{"-test.v"}, h.TestArgs...)...)
		cmd.Dir = tb.Dir
		cmd.Env = append(os.Environ(), "INTEGRATION_REQUIRE=1", "INTEGRATION_OUT="+h.OutDir)
		cmd.Stdout, cmd.Stderr = console, console
		t0 := time.Now()
		err := cmd.Run()
		if ctx.Err() != nil {
			rep.Done = false
			return rep, fmt.Errorf("%w: %w", ErrIncomplete, ctx.Err())
		}
		if _, ok := err.(*exec.ExitError); err != nil && !ok {
			return rep, fmt.Errorf("integration: run %s: %w", name, err)
		}
		rep.Results = append(rep.Results, Result{Name: name, Pass: err == nil, Seconds: time.Since(t0).Seconds()})
		if err != nil {
			rep.RC = 1
		}
	}
	rep.Total = time.Since(start)
	return rep, nil
}
