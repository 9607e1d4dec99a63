//go:build integration && linux

package enclave

// The enclave I/O table (issue 12): fio on every layer of the storage
// stack Run builds, so that each layer's cost shows. nbd-parent (the real
// binary) serves the image and run files over vsock loopback (CID 1), the
// exports are attached with AttachExport (on kernels refusing vsock
// sockets for NBD, through the same nbdkernel.Relay nbd-enclave runs), and
// dm-verity, dm-crypt, erofs, ext4 and the overlay root are opened with the
// agent's own steps and options. Writable layers are measured before the
// next layer goes on top of them (a raw write under a mounted filesystem
// would wreck it); read-only layers are measured with the whole stack up.
// Reference rows run the same jobs on loop devices over the same files (no
// NBD), with the same dm-crypt and dm-verity tables, to separate NBD's cost
// from the dm targets'.
//
// TestEnclaveIOSmoke (in make integration) brings the stack up and runs
// fio briefly on each NBD layer. TestEnclaveIOTable, the table itself, runs
// for minutes and only when named by -test.run: scripts/bench-vm-enclave.sh.
// The numbers are printed, never asserted.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/enclave-storage/enclave-storage/integration/itest"
	"github.com/enclave-storage/enclave-storage/internal/syncbuf"
	"github.com/enclave-storage/enclave-storage/keys"
	"github.com/enclave-storage/enclave-storage/nbdclient"
	"github.com/enclave-storage/enclave-storage/nbdkernel"
	"github.com/enclave-storage/enclave-storage/overlay"
	"github.com/enclave-storage/enclave-storage/verity"
)

// ioTablePrefix starts every line of the table; scripts/bench-vm-enclave.sh
// greps for it.
const ioTablePrefix = "BENCH-ENCLAVE"

// An ioPattern is one fio job shape.
type ioPattern struct {
	name  string
	rw    string // fio --rw
	bs    string
	depth int
	// buffered: one pass through the page cache (and read-ahead) after
	// fio's cache invalidation, as an application reading a file does;
	// the others are direct and time-based.
	buffered bool
}

var (
	seqWrite  = ioPattern{"seqwrite", "write", "1M", 8, false}
	seqRead   = ioPattern{"seqread", "read", "1M", 8, false}
	randWrite = ioPattern{"randwrite", "randwrite", "4k", 16, false}
	randRead  = ioPattern{"randread", "randread", "4k", 16, false}
	bufRead   = ioPattern{"seqread-buf", "read", "1M", 1, true}
)

// ioScale sizes a run: the working set of every target, how long each
// time-based job runs (after ramp), and which patterns run on writable and
// read-only targets, in order (writes first: they fill what reads read).
type ioScale struct {
	size          int64
	runtime, ramp time.Duration
	writable      []ioPattern
	readOnly      []ioPattern
	raw           bool // measure the run volume's raw and dm-crypt layers (before ext4)
	references    bool // the loop-device rows
}

// ioTarget is one layer measured: a block device or a file.
type ioTarget struct {
	layer    string // row name
	path     string
	writable bool
	below    string // the layer it sits on ("" for the bottom)
	ref      string // the local (no NBD) row to compare with
}

// ioResult is one table row.
type ioResult struct {
	mode  string // direct or buffered
	mibs  float64
	iops  float64
	latUS float64 // mean completion latency
	cpu   cpuShare
}

// TestEnclaveIOSmoke brings the enclave's stack up over nbd-parent and
// runs fio for a moment on each layer above the raw run volume: the
// table's machinery works. It reports numbers but checks none.
func TestEnclaveIOSmoke(t *testing.T) {
	ioTable(t, ioScale{
		size:     8 << 20,
		runtime:  time.Second,
		writable: []ioPattern{randWrite},
		readOnly: []ioPattern{randRead},
	})
}

// TestEnclaveIOTable is the enclave I/O table. It takes minutes under TCG,
// so it runs only when -test.run names it (scripts/bench-vm-enclave.sh).
func TestEnclaveIOTable(t *testing.T) {
	if f := flag.Lookup("test.run"); f == nil || !strings.Contains(f.Value.String(), "TestEnclaveIOTable") {
		t.Skip("the enclave I/O table runs for minutes: scripts/bench-vm-enclave.sh (-guest.run=TestEnclaveIOTable)")
	}
	ioTable(t, ioScale{
		size:       32 << 20,
		runtime:    2 * time.Second,
		ramp:       time.Second,
		writable:   []ioPattern{seqWrite, seqRead, randWrite, randRead},
		readOnly:   []ioPattern{seqRead, randRead, bufRead},
		raw:        true,
		references: true,
	})
}

func ioTable(t *testing.T, sc ioScale) {
	needKernel(t)
	fio := itest.NeedHostTool(t, "fio")
	parentBin, err := exec.LookPath("nbd-parent")
	itest.Need(t, "nbd-parent binary (the harness puts cmd/* in /bin)", err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	dir := t.TempDir()
	tImg := time.Now()
	img, params, dataFile := ioImage(t, sc.size)
	t.Logf("image built in %v", time.Since(tImg).Round(time.Millisecond))
	run := filepath.Join(dir, "run.img")
	// The run volume: LUKS2's 16 MiB header, then ext4 holding a file of
	// the working set's size, its journal and metadata.
	runSize := 16<<20 + 2*sc.size + 16<<20
	port := uint32(21500)
	parentPid := startParent(t, parentBin, "--listen", fmt.Sprintf("vsock://:%d", port),
		"--listen", fmt.Sprintf("tcp://127.0.0.1:%d", port),
		"--export", "image="+img+",ro", "--export", fmt.Sprintf("run=%s,size=%d", run, runSize))
	cfg := Config{Parent: fmt.Sprintf("vsock://1:%d", port)}

	m := &ioMeter{t: t, fio: fio, sc: sc, parentPid: parentPid, dir: t.TempDir()}
	t0 := time.Now()
	step := func(what string) { t.Logf("%v: %s", time.Since(t0).Round(time.Millisecond), what) }
	m.header()
	nl, err := nbdkernel.Dial()
	if err != nil {
		t.Fatal(err)
	}
	defer nl.Close()
	undo := NewUndo(nil)
	defer undo.Unwind(context.WithoutCancel(ctx))

	// The run volume, bottom up: raw NBD, dm-crypt, then ext4 and the
	// overlay. The loop-device references share the first two fio runs
	// (each fio start costs seconds under TCG); their dm devices take the
	// agent's names, so they are gone before the NBD stack's.
	runDev, err := AttachExport(ctx, nl, cfg, "run", true, undo)
	if err != nil {
		t.Fatalf("AttachExport run: %v", err)
	}
	step("run attached")
	m.info(runDev, "run")
	if sc.raw {
		m.measureRaw(ctx, t, nl, runDev, fmt.Sprintf("tcp://127.0.0.1:%d", port), run, img, params)
	}
	cryptDev := openRunCrypt(ctx, t, runDev, undo)
	m.infoDev("run (dm-crypt)", cryptDev, "-")
	if sc.raw {
		m.measure(ctx, ioTarget{layer: "crypt", path: cryptDev, writable: true, below: "nbd-run", ref: "crypt-loop"})
	}
	step("run measured raw and through dm-crypt")
	if _, err := Mkfs(ctx, cryptDev); err != nil {
		t.Fatal(err)
	}
	mnt := t.TempDir()
	lower, upper, rootDir := filepath.Join(mnt, "lower"), filepath.Join(mnt, "upper"), filepath.Join(mnt, "root")
	if err := Mount(cryptDev, upper, "ext4", unix.MS_NODEV, "", undo); err != nil {
		t.Fatal(err)
	}

	// The image: raw NBD and dm-verity, then erofs.
	imgDev, err := AttachExport(ctx, nl, cfg, "image", false, undo)
	if err != nil {
		t.Fatalf("AttachExport image: %v", err)
	}
	step("ext4 made and mounted, image attached")
	m.info(imgDev, "image")
	verityDev, err := OpenVerity(ctx, imgDev, params, undo)
	if err != nil {
		t.Fatal(err)
	}
	// As Run does: the verity device's own read-ahead.
	if _, err := TuneQueue(verityDev, QueueLimits{ReadAheadKB: imgDev.Queue.ReadAheadKB}); err != nil {
		t.Logf("warning: %v", err)
	}
	m.infoDev("image (dm-verity)", verityDev, "-")
	if err := Mount(verityDev, lower, "erofs", unix.MS_RDONLY|unix.MS_NODEV, "", undo); err != nil {
		t.Fatal(err)
	}

	// The application's root, as Run mounts it.
	o := overlay.Options{Lower: []string{lower}, Upper: filepath.Join(upper, "root"), Work: filepath.Join(upper, "work")}
	for _, d := range []string{o.Upper, o.Work, rootDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	root, err := overlay.NewRoot(rootDir, o)
	if err != nil {
		t.Fatal(err)
	}
	undo.Push("unmount root", root.Close)
	// A file the application writes: new, so in the upper layer.
	appFile := filepath.Join(rootDir, "bench.dat")
	step("overlay mounted")
	fill(t, appFile, sc.size)
	step("application file written")
	// The application's view (overlay over ext4 and over erofs) and the
	// image's devices, in one fio run.
	m.measure(ctx,
		ioTarget{layer: "overlay-upper", path: appFile, writable: true, below: "crypt", ref: "loop-run"},
		ioTarget{layer: "nbd-image", path: imgDev.Path, ref: "loop-image"},
		ioTarget{layer: "verity", path: verityDev, below: "nbd-image", ref: "verity-loop"},
		ioTarget{layer: "overlay-lower", path: filepath.Join(rootDir, dataFile), below: "verity", ref: "loop-image"})
	if err := undo.Unwind(ctx); err != nil {
		t.Fatalf("teardown: %v", err)
	}
	step("NBD stack measured and torn down")
}

// measureRaw measures the raw run device and, with sc.references, the run
// export attached a second time over TCP loopback (which the kernel takes
// itself: no vsock, no relay), and loop devices over the run and image
// files with OpenRun's and OpenVerity's tables on them; it removes those
// before returning.
func (m *ioMeter) measureRaw(ctx context.Context, t *testing.T, nl *nbdkernel.Conn, runDev *Attached, tcp, run, img string, params *verity.Params) {
	t.Helper()
	nbdRun := ioTarget{layer: "nbd-run", path: runDev.Path, writable: true, ref: "loop-run"}
	if !m.sc.references {
		m.measure(ctx, nbdRun)
		return
	}
	local := NewUndo(nil)
	defer local.Unwind(context.WithoutCancel(ctx))
	tcpDev, err := AttachExport(ctx, nl, Config{Parent: tcp}, "run", true, local)
	if err != nil {
		t.Fatalf("AttachExport run over TCP: %v", err)
	}
	m.info(tcpDev, "run over TCP")
	runLoop, err := itest.AttachLoop(ctx, run, false)
	if err != nil {
		t.Fatal(err)
	}
	defer runLoop.Close()
	imgLoop, err := itest.AttachLoop(ctx, img, true)
	if err != nil {
		t.Fatal(err)
	}
	defer imgLoop.Close()
	verityLoop, err := OpenVerity(ctx, loopAttached(t, imgLoop, "image"), params, local)
	if err != nil {
		t.Fatal(err)
	}
	m.measure(ctx,
		ioTarget{layer: "loop-run", path: runLoop.Path, writable: true},
		nbdRun,
		ioTarget{layer: "nbd-run-tcp", path: tcpDev.Path, writable: true, ref: "loop-run"},
		ioTarget{layer: "loop-image", path: imgLoop.Path},
		ioTarget{layer: "verity-loop", path: verityLoop, below: "loop-image"})
	cryptLoop := openRunCrypt(ctx, t, loopAttached(t, runLoop, "run"), local)
	m.measure(ctx, ioTarget{layer: "crypt-loop", path: cryptLoop, writable: true, below: "loop-run"})
	if err := local.Unwind(ctx); err != nil {
		t.Fatalf("removing the loop references' dm devices: %v", err)
	}
}

// startParent runs nbd-parent with args until the test ends and waits
// until it listens; it returns its pid.
func startParent(t *testing.T, bin string, args ...string) int {
	t.Helper()
	cmd := exec.Command(bin, args...)
	var out syncbuf.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	var werr error
	go func() {
		werr = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(out.String(), "msg=listening"); {
		select {
		case <-exited:
			t.Fatalf("nbd-parent exited: %v\n%s", werr, out.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("nbd-parent is not listening after 30s:\n%s", out.String())
		}
	}
	return cmd.Process.Pid
}

// openRunCrypt formats dev as an ephemeral run volume (OpenRun, as a
// --ephemeral launch does) and returns the dm-crypt device. The KDF is
// cheap: argon2id takes minutes under TCG and is not on the I/O path.
func openRunCrypt(ctx context.Context, t *testing.T, dev *Attached, undo *Undo) string {
	t.Helper()
	opts := Config{LUKSKDF: &KDF{Type: "pbkdf2", Iterations: 1000}}.formatOptions()
	path, _, err := OpenRun(ctx, dev, keys.Random{}, true, opts, undo, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("OpenRun on %s: %v", dev.Path, err)
	}
	return path
}

// loopAttached presents a loop device as an attached export, so the
// reference rows get OpenRun's and OpenVerity's very tables.
func loopAttached(t *testing.T, l *itest.Loop, name string) *Attached {
	t.Helper()
	f, err := os.Open(l.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	size, err := f.Seek(0, 2)
	if err != nil {
		t.Fatal(err)
	}
	return &Attached{Export: &nbdclient.Export{Name: name, Size: uint64(size)}, Path: l.Path}
}

// ioImage builds a verity-protected erofs image holding one file of size
// bytes of incompressible data, and returns the image, its parameters and
// the file's name in it.
func ioImage(t *testing.T, size int64) (string, *verity.Params, string) {
	t.Helper()
	const name = "data.bin"
	src := t.TempDir()
	fill(t, filepath.Join(src, name), size)
	img, p := verityImage(t, src)
	os.Remove(filepath.Join(src, name)) // tmpfs: the VM has 1 GiB
	return img, p, name
}

// fill writes size pseudo-random bytes to path and syncs them.
func fill(t *testing.T, path string, size int64) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rng := rand.NewChaCha8([32]byte{12})
	buf := make([]byte, 1<<20)
	w := bufio.NewWriterSize(f, len(buf))
	for n := int64(0); n < size; n += int64(len(buf)) {
		rng.Read(buf)
		if _, err := w.Write(buf[:min(int64(len(buf)), size-n)]); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
}

// ioMeter runs fio on targets and prints the rows.
type ioMeter struct {
	t         *testing.T
	fio       string
	sc        ioScale
	parentPid int
	dir       string // fio's working directory
}

func (m *ioMeter) header() {
	fmt.Printf("%s layer pattern MiB/s IOPS lat_us mode parent%% relay%% busy%% below ref\n", ioTablePrefix)
}

// info prints how an NBD device is attached: through the relay or not,
// and its queue settings.
func (m *ioMeter) info(a *Attached, export string) {
	a.mu.Lock()
	relay := a.relay != nil
	a.mu.Unlock()
	m.infoDev(export, a.Path, fmt.Sprint(relay))
}

// infoDev prints dev's queue settings (any block device, dm included).
func (m *ioMeter) infoDev(export, dev, relay string) {
	var st unix.Stat_t
	if err := unix.Stat(dev, &st); err != nil {
		m.t.Fatal(err)
	}
	q := func(name string) string {
		b, _ := os.ReadFile(fmt.Sprintf("/sys/dev/block/%d:%d/queue/%s", unix.Major(st.Rdev), unix.Minor(st.Rdev), name))
		return strings.TrimSpace(string(b))
	}
	fmt.Printf("%s-INFO export=%q device=%s relay=%s read_ahead_kb=%s max_sectors_kb=%s nr_requests=%s scheduler=%q\n",
		ioTablePrefix, export, dev, relay, q("read_ahead_kb"), q("max_sectors_kb"), q("nr_requests"), q("scheduler"))
}

// ioJob is one fio job of a measure call.
type ioJob struct {
	name    string // fio job name, LAYER.PATTERN
	target  ioTarget
	pattern ioPattern
}

// measure runs every pattern on every target, in order, as the jobs of one
// fio process (starting fio under TCG takes seconds: it maps 80 MB of
// libraries), and prints a row per job. Each job's CPU shares come from
// /proc snapshots fio's exec_prerun and exec_postrun take around it.
func (m *ioMeter) measure(ctx context.Context, targets ...ioTarget) {
	m.t.Helper()
	var jobs []ioJob
	var file strings.Builder
	snap := fmt.Sprintf("cat /proc/uptime /proc/stat /proc/%d/stat /proc/%d/stat", m.parentPid, os.Getpid())
	fmt.Fprintf(&file, "[global]\nthread\nsize=%d\nruntime=%dms\n", m.sc.size, m.sc.runtime.Milliseconds())
	for _, tg := range targets {
		pats := m.sc.readOnly
		if tg.writable {
			pats = m.sc.writable
		}
		for _, p := range pats {
			j := ioJob{name: tg.layer + "." + p.name, target: tg, pattern: p}
			jobs = append(jobs, j)
			fmt.Fprintf(&file, "[%s]\nstonewall\nfilename=%s\nrw=%s\nbs=%s\niodepth=%d\nexec_prerun=%s\nexec_postrun=%s\n",
				j.name, tg.path, p.rw, p.bs, p.depth, snap, snap)
			if p.buffered {
				// One pass at most (the page cache would serve a
				// second), after dropping what earlier jobs cached.
				fmt.Fprintf(&file, "direct=0\nioengine=psync\ninvalidate=1\n")
				if strings.Contains(p.rw, "write") {
					fmt.Fprintf(&file, "end_fsync=1\n")
				}
			} else {
				fmt.Fprintf(&file, "direct=1\nioengine=libaio\ntime_based\n")
				if m.sc.ramp > 0 {
					fmt.Fprintf(&file, "ramp_time=%dms\n", m.sc.ramp.Milliseconds())
				}
			}
		}
	}
	jobFile := filepath.Join(m.dir, "jobs.fio")
	out := filepath.Join(m.dir, "fio.json")
	if err := os.WriteFile(jobFile, []byte(file.String()), 0o644); err != nil {
		m.t.Fatal(err)
	}
	os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0)
	cmd := exec.CommandContext(ctx, m.fio, "--output-format=json", "--output="+out, jobFile)
	cmd.Dir = m.dir
	var log syncbuf.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	t0 := time.Now()
	if err := cmd.Run(); err != nil {
		m.t.Fatalf("fio: %v\n%s\njob file:\n%s", err, log.String(), file.String())
	}
	m.t.Logf("fio: %d jobs in %v", len(jobs), time.Since(t0).Round(time.Millisecond))
	b, err := os.ReadFile(out)
	if err != nil {
		m.t.Fatal(err)
	}
	res, err := parseFio(b)
	if err != nil {
		m.t.Fatalf("%v\n%s", err, log.String())
	}
	dash := func(s string) string {
		if s == "" {
			return "-"
		}
		return s
	}
	for _, j := range jobs {
		r, ok := res[j.name]
		if !ok {
			m.t.Fatalf("fio output has no job %s", j.name)
		}
		r.mode = "direct"
		if j.pattern.buffered {
			r.mode = "buffered"
		}
		pre, err1 := m.snapshot(j.name + ".prerun.txt")
		post, err2 := m.snapshot(j.name + ".postrun.txt")
		if err := errors.Join(err1, err2); err != nil {
			m.t.Fatal(err)
		}
		r.cpu = post.since(pre)
		fmt.Printf("%s %s %s %.1f %.0f %.0f %s %.0f %.0f %.0f %s %s\n", ioTablePrefix, j.target.layer, j.pattern.name,
			r.mibs, r.iops, r.latUS, r.mode, r.cpu.parent, r.cpu.relay, r.cpu.busy, dash(j.target.below), dash(j.target.ref))
	}
}

// fioStats is the part of fio's JSON output the table reads.
type fioStats struct {
	BW   float64 `json:"bw_bytes"`
	IOPS float64 `json:"iops"`
	IOs  int64   `json:"total_ios"`
	Lat  struct {
		Mean float64 `json:"mean"`
	} `json:"clat_ns"`
}

// parseFio reads fio --output-format=json: per job name, its read or
// write side, whichever did I/O.
func parseFio(b []byte) (map[string]ioResult, error) {
	var out struct {
		Jobs []struct {
			Name  string   `json:"jobname"`
			Error int      `json:"error"`
			Read  fioStats `json:"read"`
			Write fioStats `json:"write"`
		} `json:"jobs"`
	}
	// fio may print notes before the JSON document.
	if i := strings.IndexByte(string(b), '{'); i > 0 {
		b = b[i:]
	}
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("fio output: %w", err)
	}
	res := map[string]ioResult{}
	for _, j := range out.Jobs {
		if j.Error != 0 {
			return nil, fmt.Errorf("fio job %s: error %d", j.Name, j.Error)
		}
		s := j.Read
		if j.Write.IOs > s.IOs {
			s = j.Write
		}
		// A job can complete nothing in its window when one request
		// outlasts it (1 MiB at qd8 on a starved TCG guest): a 0 row,
		// which the script's median of runs passes over.
		res[j.Name] = ioResult{mibs: s.BW / (1 << 20), iops: s.IOPS, latUS: s.Lat.Mean / 1000}
	}
	return res, nil
}

// cpuShare is CPU time over a job's wall time, in percent of one CPU: of
// nbd-parent, of this process (the relay's goroutines), and of the whole
// machine (fio, the kernel's NBD, dm and filesystem work included).
type cpuShare struct{ parent, relay, busy float64 }

// cpuSample is a snapshot of /proc/uptime, /proc/stat, nbd-parent's and
// this process's /proc/PID/stat, in seconds.
type cpuSample struct {
	uptime, busy, parent, self float64
}

const userHZ = 100 // clock ticks per second in /proc (USER_HZ)

// snapshot parses what exec_prerun/exec_postrun's cat left in file.
func (m *ioMeter) snapshot(file string) (cpuSample, error) {
	b, err := os.ReadFile(filepath.Join(m.dir, file))
	if err != nil {
		return cpuSample{}, err
	}
	var s cpuSample
	lines := strings.Split(string(b), "\n")
	up, _, _ := strings.Cut(lines[0], " ")
	if s.uptime, err = strconv.ParseFloat(up, 64); err != nil {
		return cpuSample{}, fmt.Errorf("%s: %w", file, err)
	}
	parent, self := strconv.Itoa(m.parentPid)+" (", strconv.Itoa(os.Getpid())+" ("
	for _, l := range lines[1:] {
		switch {
		case strings.HasPrefix(l, "cpu "):
			for i, v := range strings.Fields(l)[1:] {
				n, _ := strconv.ParseFloat(v, 64)
				if i != 3 && i != 4 { // idle, iowait
					s.busy += n / userHZ
				}
			}
		case strings.HasPrefix(l, parent):
			s.parent = procCPU(l)
		case strings.HasPrefix(l, self):
			s.self = procCPU(l)
		}
	}
	return s, nil
}

// procCPU is a process's user+system CPU seconds from its /proc/PID/stat
// line (fields 14 and 15, counted after the parenthesised command name).
func procCPU(line string) float64 {
	i := strings.LastIndexByte(line, ')')
	f := strings.Fields(line[i+1:])
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseFloat(f[11], 64)
	s, _ := strconv.ParseFloat(f[12], 64)
	return (u + s) / userHZ
}

func (s cpuSample) since(b cpuSample) cpuShare {
	wall := s.uptime - b.uptime
	if wall <= 0 {
		return cpuShare{}
	}
	return cpuShare{
		parent: 100 * (s.parent - b.parent) / wall,
		relay:  100 * (s.self - b.self) / wall,
		busy:   100 * (s.busy - b.busy) / wall,
	}
}
