//go:build integration && linux

package nbd

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/enclave-storage/enclave-storage/integration/itest"
	"github.com/mdlayher/vsock"
)

// The vsock benchmark (scripts/bench-vm-vsock.sh) serves one file from
// nbd-parent and from nbdkit's file plugin over vsock loopback (CID 1) in
// the integration microVM, and drives both with the same client, fio's nbd
// engine (libnbd), in the same run. make integration runs only its smoke
// part, which checks both servers answer and that data survives a round
// trip through each vsock path; the timed part runs when asked for by name
// (-test.run=TestVsockBench/full). Nothing timed is asserted.

// vsockRounds is how many times the timed parts run every pattern on
// every server; one server's rounds in the emulated VM differ by up to 2x.
var vsockRounds = flag.Int("vsockbench.rounds", 3, "rounds of TestVsockBench/full and /variants")

// vsockBenchPattern is one fio workload of the benchmark.
type vsockBenchPattern struct {
	name      string
	rw, bs    string
	depth     int
	readWrite bool // fio's write fields (48: KiB/s) rather than read's (7)
}

var vsockBenchPatterns = []vsockBenchPattern{
	{name: "seqread-1M-qd8", rw: "read", bs: "1M", depth: 8},
	{name: "seqwrite-1M-qd8", rw: "write", bs: "1M", depth: 8, readWrite: true},
	{name: "randread-4k-qd32", rw: "randread", bs: "4k", depth: 32},
	{name: "randwrite-4k-qd32", rw: "randwrite", bs: "4k", depth: 32, readWrite: true},
}

// vsockPeers are the two servers under test, each on its own vsock port.
type vsockPeers struct {
	ours, nbdkit string // libnbd URIs
}

// startVsockPeers serves img as export "bench" from nbd-parent and from
// nbdkit and waits until both answer nbdinfo.
func startVsockPeers(t *testing.T, img string) vsockPeers {
	t.Helper()
	_, err := os.Stat("/sys/module/vsock_loopback")
	itest.Need(t, "vsock_loopback module", err)
	parent, err := exec.LookPath("nbd-parent")
	itest.Need(t, "nbd-parent (the harness puts it in the VM's /bin; make build on a host)", err)
	nbdkit := itest.NeedHostTool(t, "nbdkit")
	nbdinfo := itest.NeedHostTool(t, "nbdinfo")

	const oursPort, kitPort = 10911, 10912
	p := vsockPeers{
		ours:   fmt.Sprintf("nbd+vsock://1:%d/bench", oursPort),
		nbdkit: fmt.Sprintf("nbd+vsock://1:%d/bench", kitPort),
	}
	start := func(name string, args ...string) {
		cmd := exec.Command(name, args...)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	}
	start(parent, "--listen", fmt.Sprintf("vsock://:%d", oursPort), "--export", "bench="+img, "--log-level", "warn")
	// nbdkit serves any export name; --exit-with-parent would tie it to
	// this test's thread, Kill at cleanup is enough.
	start(nbdkit, "--foreground", "--vsock", "--port", strconv.Itoa(kitPort), "file", img)
	for _, uri := range []string{p.ours, p.nbdkit} {
		var out []byte
		var err error
		for range 100 {
			if out, err = exec.Command(nbdinfo, "--size", uri).CombinedOutput(); err == nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil {
			t.Fatalf("%s does not answer: %v\n%s", uri, err, out)
		}
	}
	return p
}

// TestVsockBench serves one file from both servers over vsock loopback.
// smoke checks data integrity through every vsock path; full measures.
func TestVsockBench(t *testing.T) {
	// 64 MiB for the timed runs; the smoke alone (make integration) checks
	// the same paths on 16 MiB, a quarter of the emulated VM's time.
	size := 16 << 20
	if r := flag.Lookup("test.run"); r != nil && strings.Contains(r.Value.String(), "TestVsockBench/") {
		size = 64 << 20
	}
	img := filepath.Join(t.TempDir(), "bench.img")
	data := make([]byte, size)
	rand.Read(data)
	if err := os.WriteFile(img, data, 0o600); err != nil {
		t.Fatal(err)
	}
	peers := startVsockPeers(t, img)
	t.Run("smoke", func(t *testing.T) { vsockRoundTrip(t, peers, size) })
	t.Run("full", func(t *testing.T) {
		if !askedFor(t) {
			t.Skip("the timed benchmark runs only when named: -test.run=TestVsockBench/full (scripts/bench-vm-vsock.sh)")
		}
		vsockBench(t, []vsockServer{{"ours", peers.ours}, {"nbdkit", peers.nbdkit}}, *vsockRounds, 2*time.Second)
	})
	// Each of our vsock data-path choices switched off in turn, served
	// in-process next to the others and nbdkit: what each one buys.
	t.Run("variants", func(t *testing.T) {
		if !askedFor(t) {
			t.Skip("runs only when named: -test.run=TestVsockBench/variants")
		}
		servers := []vsockServer{{"ours", peers.ours}, {"nbdkit", peers.nbdkit}}
		for i, v := range []struct {
			name string
			tune tuning
		}{
			{"no-view", tuning{noView: true}},
			{"no-inline-write", tuning{noInlineWrite: true}},
			{"no-buffer", tuning{noVsockBuffer: true}},
			{"no-waiting-sends", tuning{noWaitingSends: true}},
		} {
			servers = append(servers, vsockServer{v.name, serveVsockTuned(t, img, uint32(10920+i), v.tune)})
		}
		vsockBench(t, servers, *vsockRounds, 2*time.Second)
	})
}

// vsockServer is a server under test and its libnbd URI.
type vsockServer struct{ name, uri string }

// serveVsockTuned serves a copy of img (nbd-parent locks img itself)
// read-write as "bench" in-process on vsock port with the given data-path
// tuning, and returns its URI.
func serveVsockTuned(t *testing.T, img string, port uint32, tune tuning) string {
	t.Helper()
	data, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	cp := fmt.Sprintf("%s.%d", img, port)
	if err := os.WriteFile(cp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := OpenFile(cp, FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	l, err := vsock.Listen(port, nil)
	itest.Need(t, "vsock listen", err)
	srv, err := NewServer([]*Export{{Name: "bench", Backend: f}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	srv.tune = tune
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, l) }()
	t.Cleanup(func() { cancel(); <-done })
	return fmt.Sprintf("nbd+vsock://1:%d/bench", port)
}

// askedFor reports whether -test.run names t explicitly (its last
// element), not merely matches it by default.
func askedFor(t *testing.T) bool {
	f := flag.Lookup("test.run")
	if f == nil {
		return false
	}
	_, last := filepath.Split(t.Name())
	return strings.Contains(f.Value.String(), last)
}

// vsockRoundTrip copies random data into each server with nbdcopy and
// reads it back through the other one (both serve the same file), at
// several request sizes, comparing SHA-256 each time.
func vsockRoundTrip(t *testing.T, p vsockPeers, size int) {
	nbdcopy := itest.NeedHostTool(t, "nbdcopy")
	for _, tt := range []struct {
		name     string
		req      string
		from, to string // write through, read back through
	}{
		{"ours-64K", "65536", p.ours, p.ours},
		{"ours-1M", "1048576", p.ours, p.ours},
		{"ours-then-nbdkit-256K", "262144", p.ours, p.nbdkit},
		{"nbdkit-then-ours-256K", "262144", p.nbdkit, p.ours},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir() // the VM's /tmp is half its memory: free each pair
			src, dst := filepath.Join(dir, "src"), filepath.Join(dir, "dst")
			want := make([]byte, size)
			rand.Read(want)
			if err := os.WriteFile(src, want, 0o600); err != nil {
				t.Fatal(err)
			}
			run := func(args ...string) {
				t.Helper()
				if out, err := exec.Command(nbdcopy, append([]string{"--request-size=" + tt.req}, args...)...).CombinedOutput(); err != nil {
					t.Fatalf("nbdcopy %s: %v\n%s", strings.Join(args, " "), err, out)
				}
			}
			run(src, tt.from)
			run(tt.to, dst)
			got, err := os.ReadFile(dst)
			if err != nil {
				t.Fatal(err)
			}
			if sha256.Sum256(got) != sha256.Sum256(want) {
				t.Errorf("read back through %s differs from what was written through %s (sha256)", tt.to, tt.from)
			}
		})
	}
}

// vsockBench runs every pattern on every server for rounds rounds,
// rotating who goes first, and prints the medians, MiB/s and the ratio of
// each to nbdkit (servers[1]), as lines starting BENCH-VSOCK, which
// scripts/bench-vm-vsock.sh extracts.
func vsockBench(t *testing.T, servers []vsockServer, rounds int, runtime time.Duration) {
	fio := itest.NeedHostTool(t, "fio")
	got := map[string][]float64{} // pattern/server → MiB/s per round
	for r := range rounds {
		for _, pat := range vsockBenchPatterns {
			// One fio runs the servers one after another (stonewall),
			// rotating who goes first: starting fio from the host's
			// share costs the emulated VM far more than a job.
			order := make([]vsockServer, len(servers))
			for i := range servers {
				order[i] = servers[(i+r)%len(servers)]
			}
			v, err := fioMiBs(fio, order, pat, runtime)
			if err != nil {
				t.Fatalf("%s: %v", pat.name, err)
			}
			for i, s := range order {
				got[pat.name+"/"+s.name] = append(got[pat.name+"/"+s.name], v[i])
				fmt.Printf("bench-vsock: round %d %s %s %.1f MiB/s\n", r+1, pat.name, s.name, v[i])
			}
		}
	}
	var out bytes.Buffer
	fmt.Fprintf(&out, "BENCH-VSOCK %-18s", "pattern")
	for _, s := range servers {
		fmt.Fprintf(&out, " %11s", s.name)
	}
	for _, s := range servers {
		if s.name != "nbdkit" {
			fmt.Fprintf(&out, " %11s", s.name+"/kit")
		}
	}
	fmt.Fprintf(&out, "   (MiB/s, median of %d rounds of %v; fio nbd engine over vsock loopback)\n", rounds, runtime)
	for _, pat := range vsockBenchPatterns {
		fmt.Fprintf(&out, "BENCH-VSOCK %-18s", pat.name)
		for _, s := range servers {
			fmt.Fprintf(&out, " %11.1f", median(got[pat.name+"/"+s.name]))
		}
		kit := median(got[pat.name+"/nbdkit"])
		for _, s := range servers {
			if s.name == "nbdkit" {
				continue
			}
			ratio := "n/a"
			if kit > 0 {
				ratio = fmt.Sprintf("%.2fx", median(got[pat.name+"/"+s.name])/kit)
			}
			fmt.Fprintf(&out, " %11s", ratio)
		}
		fmt.Fprintln(&out)
	}
	for _, pat := range vsockBenchPatterns {
		for _, s := range servers {
			fmt.Fprintf(&out, "BENCH-VSOCK rounds %s %s %v\n", pat.name, s.name, rounded(got[pat.name+"/"+s.name]))
		}
	}
	// Go's runtime reads the clock far more often than nbdkit does: on a
	// clock source the vDSO cannot read (TCG often ends up on hpet or
	// acpi_pm), each read is a system call, which taxes us alone.
	cs, err := os.ReadFile("/sys/devices/system/clocksource/clocksource0/current_clocksource")
	if err != nil {
		cs = []byte("unknown")
	}
	fmt.Fprintf(&out, "BENCH-VSOCK clocksource %s\n", bytes.TrimSpace(cs))
	io.Copy(os.Stdout, &out)
}

// fioMiBs runs one fio job per server, one after the other, and returns
// their bandwidths in that order.
func fioMiBs(fio string, servers []vsockServer, pat vsockBenchPattern, runtime time.Duration) ([]float64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute+time.Duration(len(servers))*(runtime+30*time.Second))
	defer cancel()
	args := []string{"--ioengine=nbd", "--rw=" + pat.rw, "--bs=" + pat.bs, "--iodepth=" + strconv.Itoa(pat.depth),
		fmt.Sprintf("--runtime=%ds", int(runtime.Seconds())), "--time_based", "--minimal"}
	for _, s := range servers {
		args = append(args, "--name="+s.name, "--uri="+s.uri, "--stonewall")
	}
	cmd := exec.CommandContext(ctx, fio, args...)
	cmd.WaitDelay = 5 * time.Second // fio's job processes may hold the pipe
	out, err := cmd.CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("fio: %w\n%s", err, out)
	}
	field := 7 // read KiB/s in fio's terse output
	if pat.readWrite {
		field = 48
	}
	byName := map[string]float64{}
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Split(line, ";"); len(f) > 50 {
			kib, err := strconv.ParseFloat(f[field-1], 64)
			if err != nil {
				return nil, fmt.Errorf("fio terse field %d %q: %w", field, f[field-1], err)
			}
			byName[f[2]] = kib / 1024 // field 3: the job's name
		}
	}
	v := make([]float64, len(servers))
	for i, s := range servers {
		var ok bool
		if v[i], ok = byName[s.name]; !ok {
			return nil, fmt.Errorf("no result for job %s in fio's output:\n%s", s.name, out)
		}
	}
	return v, nil
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func rounded(v []float64) []int {
	r := make([]int, len(v))
	for i, x := range v {
		r[i] = int(x + 0.5)
	}
	return r
}
