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
)

// The vsock benchmark (scripts/bench-vm-vsock.sh) serves one file from
// nbd-parent and from nbdkit's file plugin over vsock loopback (CID 1) in
// the integration microVM, and drives both with the same client, fio's nbd
// engine (libnbd), in the same run. make integration runs only its smoke
// part, which checks both servers answer and that data survives a round
// trip through each vsock path; the timed part runs when asked for by name
// (-test.run=TestVsockBench/full). Nothing timed is asserted.

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
	const size = 64 << 20
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
		vsockBench(t, peers, 3, 3*time.Second)
	})
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
// request sizes on both sides of the server's inline-read and splice
// thresholds, comparing SHA-256 each time.
func vsockRoundTrip(t *testing.T, p vsockPeers, size int) {
	nbdcopy := itest.NeedHostTool(t, "nbdcopy")
	dir := t.TempDir()
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
			src, dst := filepath.Join(dir, "src-"+tt.name), filepath.Join(dir, "dst-"+tt.name)
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

// vsockBench runs every pattern on both servers for rounds rounds,
// alternating who goes first, and prints the medians as lines starting
// BENCH-VSOCK, which scripts/bench-vm-vsock.sh extracts.
func vsockBench(t *testing.T, p vsockPeers, rounds int, runtime time.Duration) {
	fio := itest.NeedHostTool(t, "fio")
	got := map[string][]float64{} // pattern/server → MiB/s per round
	for r := range rounds {
		for _, pat := range vsockBenchPatterns {
			order := []struct{ name, uri string }{{"ours", p.ours}, {"nbdkit", p.nbdkit}}
			if r%2 == 1 {
				slices.Reverse(order)
			}
			for _, s := range order {
				v, err := fioMiBs(fio, s.uri, pat, runtime)
				if err != nil {
					t.Fatalf("%s on %s: %v", pat.name, s.name, err)
				}
				got[pat.name+"/"+s.name] = append(got[pat.name+"/"+s.name], v)
			}
		}
	}
	var out bytes.Buffer
	fmt.Fprintf(&out, "BENCH-VSOCK %-18s %9s %9s %7s   (MiB/s, median of %d rounds of %v, fio nbd engine over vsock loopback)\n",
		"pattern", "ours", "nbdkit", "ratio", rounds, runtime)
	for _, pat := range vsockBenchPatterns {
		a, b := median(got[pat.name+"/ours"]), median(got[pat.name+"/nbdkit"])
		ratio := "n/a"
		if b > 0 {
			ratio = fmt.Sprintf("%.2fx", a/b)
		}
		fmt.Fprintf(&out, "BENCH-VSOCK %-18s %9.1f %9.1f %7s   rounds ours %v nbdkit %v\n",
			pat.name, a, b, ratio, rounded(got[pat.name+"/ours"]), rounded(got[pat.name+"/nbdkit"]))
	}
	io.Copy(os.Stdout, &out)
}

// fioMiBs runs one fio job against uri and returns its bandwidth.
func fioMiBs(fio, uri string, pat vsockBenchPattern, runtime time.Duration) (float64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), runtime+time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, fio, "--name=bench", "--ioengine=nbd", "--uri="+uri,
		"--rw="+pat.rw, "--bs="+pat.bs, "--iodepth="+strconv.Itoa(pat.depth), "--numjobs=1",
		fmt.Sprintf("--runtime=%ds", int(runtime.Seconds())), "--time_based", "--minimal").CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("fio: %w\n%s", err, out)
	}
	field := 7 // read KiB/s in fio's terse output
	if pat.readWrite {
		field = 48
	}
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Split(line, ";"); len(f) > 50 {
			kib, err := strconv.ParseFloat(f[field-1], 64)
			if err != nil {
				return 0, fmt.Errorf("fio terse field %d %q: %w", field, f[field-1], err)
			}
			return kib / 1024, nil
		}
	}
	return 0, fmt.Errorf("no terse line in fio's output:\n%s", out)
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
