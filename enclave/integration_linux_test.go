//go:build integration && linux

package enclave

// In-VM tests (package integration boots them in a QEMU microVM with the
// nbd, dm-verity, dm-crypt, vsock_loopback, erofs, ext4 and overlay
// modules): the whole mount agent against our NBD server over vsock
// loopback.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mdlayher/vsock"
	"golang.org/x/sys/unix"

	"github.com/enclave-storage/enclave-storage/dm"
	"github.com/enclave-storage/enclave-storage/erofs"
	"github.com/enclave-storage/enclave-storage/fstree"
	"github.com/enclave-storage/enclave-storage/integration/itest"
	"github.com/enclave-storage/enclave-storage/internal/syncbuf"
	"github.com/enclave-storage/enclave-storage/nbd"
	"github.com/enclave-storage/enclave-storage/nbdkernel"
	"github.com/enclave-storage/enclave-storage/verity"
)

func needKernel(t *testing.T) {
	t.Helper()
	itest.NeedRoot(t)
	itest.NeedPath(t, dm.ControlPath)
	itest.NeedPath(t, "/sys/module/nbd")
	itest.NeedPath(t, "/sys/module/overlay")
}

// serve runs our NBD server with the given exports on vsock loopback and
// returns the parent address for Config.Parent.
func serve(t *testing.T, exports ...*nbd.Export) string {
	t.Helper()
	srv, err := nbd.NewServer(exports, nbd.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var l net.Listener
	var port uint32
	for p := uint32(20000); p < 20100 && l == nil; p++ {
		if l, err = vsock.ListenContextID(1, p, nil); err == nil {
			port = p
		}
	}
	itest.Need(t, "vsock loopback listener", err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(ctx, l)
	}()
	t.Cleanup(func() {
		cancel()
		l.Close()
		<-done
	})
	return fmt.Sprintf("vsock://1:%d", port)
}

func fileExport(t *testing.T, name, path string, readOnly bool, size int64) *nbd.Export {
	t.Helper()
	f, err := nbd.OpenFile(path, nbd.FileOptions{ReadOnly: readOnly, Size: size})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return &nbd.Export{Name: name, Backend: f, ReadOnly: readOnly}
}

// TestIntegrationKernelAttach attaches an export to /dev/nbdN through
// netlink, reads and writes it through the kernel, checks STATUS and
// disconnects.
func TestIntegrationKernelAttach(t *testing.T) {
	needKernel(t)
	data := make([]byte, 4<<20)
	for i := range data {
		data[i] = byte(i / 4096)
	}
	path := filepath.Join(t.TempDir(), "disk.img")
	os.WriteFile(path, data, 0o600)
	parent := serve(t, fileExport(t, "disk", path, false, 0))

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	nl, err := nbdkernel.Dial()
	if err != nil {
		t.Fatalf("nbdkernel.Dial: %v", err)
	}
	defer nl.Close()
	undo := NewUndo(nil)
	defer undo.Unwind(ctx)
	a, err := AttachExport(ctx, nl, Config{Parent: parent}, "disk", true, undo)
	if err != nil {
		t.Fatalf("AttachExport: %v", err)
	}
	// The queue limits reached the kernel: requests up to 1 MiB (within
	// the driver's and the server's maxima); read-ahead is left alone on
	// a writable export (an earlier test may have set it on this device).
	queue := fmt.Sprintf("/sys/block/nbd%d/queue/", a.Index)
	hw, err := readKB(queue, "max_hw_sectors_kb")
	if err != nil {
		t.Fatal(err)
	}
	wantKB := min(exportQueueLimits(a.Export, true).MaxSectorsKB, hw)
	if kb, err := readKB(queue, "max_sectors_kb"); a.QueueErr != nil || err != nil || kb != wantKB || a.Queue.MaxSectorsKB != kb {
		t.Errorf("max_sectors_kb = %d (%v), Attached.Queue %+v (%v); want %d", kb, err, a.Queue, a.QueueErr, wantKB)
	}
	if ra, err := readKB(queue, "read_ahead_kb"); err != nil || ra != a.Queue.ReadAheadKB {
		t.Errorf("read_ahead_kb = %d (%v), Attached.Queue %+v", ra, err, a.Queue)
	}
	st, err := nl.Status(ctx, int(a.Index))
	if err != nil || len(st) != 1 || !st[0].Connected {
		t.Fatalf("Status(%d) = %+v, %v; want connected", a.Index, st, err)
	}
	f, err := os.OpenFile(a.Path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 8192)
	if _, err := f.ReadAt(got, 3<<20); err != nil || !bytes.Equal(got, data[3<<20:3<<20+8192]) {
		t.Fatalf("reading %s: %v (data differs: %v)", a.Path, err, !bytes.Equal(got, data[3<<20:3<<20+8192]))
	}
	if _, err := f.WriteAt([]byte("through the kernel"), 4096); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := undo.Unwind(ctx); err != nil {
		t.Fatalf("disconnect: %v", err)
	}
	b, _ := os.ReadFile(path)
	if !bytes.HasPrefix(b[4096:], []byte("through the kernel")) {
		t.Fatal("write through /dev/nbdN did not reach the served file")
	}
	waitDisconnected(t, nl, a.Index)
}

func waitDisconnected(t *testing.T, nl *nbdkernel.Conn, idx uint32) {
	t.Helper()
	for range 100 {
		st, err := nl.Status(context.Background(), int(idx))
		if err == nil && len(st) == 1 && !st[0].Connected {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("/dev/nbd%d still connected after disconnect", idx)
}

// image builds a verity-protected erofs image holding a static busybox and
// returns its path and parameters.
func image(t *testing.T) (string, *verity.Params) {
	t.Helper()
	bb, err := exec.LookPath("busybox")
	itest.Need(t, "busybox", err)
	dir := t.TempDir()
	for _, d := range []string{"bin", "etc", "tmp"} {
		os.Mkdir(filepath.Join(dir, d), 0o755)
	}
	b, err := os.ReadFile(bb)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "bin/busybox"), b, 0o755)
	for _, applet := range []string{"sh", "cat", "test", "echo", "sleep"} {
		os.Symlink("busybox", filepath.Join(dir, "bin", applet))
	}
	os.WriteFile(filepath.Join(dir, "etc/passwd"), []byte("root:x:0:0::/:/bin/sh\n"), 0o644)
	return verityImage(t, dir)
}

// verityImage writes the tree at dir as erofs with its dm-verity tree
// appended and returns the image's path and verity parameters.
func verityImage(t *testing.T, dir string) (string, *verity.Params) {
	t.Helper()
	ctx := context.Background()
	tree, err := fstree.FromDir(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(t.TempDir(), "rootfs.img")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	st, err := erofs.Write(ctx, f, tree, erofs.Options{})
	f.Close()
	if err != nil {
		t.Fatalf("erofs.Write: %v", err)
	}
	p, err := verity.FormatFile(ctx, img, img, verity.Options{HashOffset: uint64(st.Size)})
	if err != nil {
		t.Fatalf("verity.FormatFile: %v", err)
	}
	return img, p
}

// pin writes verity.json and a kernel command line for p into dir.
func pinFiles(t *testing.T, p *verity.Params) (cmdline, verityJSON string) {
	t.Helper()
	dir := t.TempDir()
	js, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	cmdline, verityJSON = filepath.Join(dir, "cmdline"), filepath.Join(dir, "verity.json")
	os.WriteFile(verityJSON, js, 0o444)
	os.WriteFile(cmdline, []byte("console=ttyS0 "+CmdlineVerityRoot+"="+hex.EncodeToString(p.RootHash)+"\n"), 0o444)
	return cmdline, verityJSON
}

func sum(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

// TestIntegrationRun runs the whole agent: first launch (LUKS2 and ext4),
// second launch (the data persisted), a wrong key (refused, run image
// untouched) and a wrong root hash (refused), checking after each that
// nothing is left mapped, mounted or connected.
func TestIntegrationRun(t *testing.T) {
	needKernel(t)
	img, params := image(t)
	cmdline, verityJSON := pinFiles(t, params)
	run := filepath.Join(t.TempDir(), "run.img")
	parent := serve(t,
		fileExport(t, "image", img, true, 0),
		fileExport(t, "run", run, false, 64<<20))
	keyDir := t.TempDir()
	key, otherKey := filepath.Join(keyDir, "key"), filepath.Join(keyDir, "other")
	os.WriteFile(key, []byte("the run volume key"), 0o600)
	os.WriteFile(otherKey, []byte("not the key"), 0o600)
	mnt := t.TempDir()
	base := Config{
		Parent:         parent,
		Key:            "file:" + key,
		LowerDir:       filepath.Join(mnt, "lower"),
		UpperDir:       filepath.Join(mnt, "upper"),
		RootDir:        filepath.Join(mnt, "root"),
		CmdlinePath:    cmdline,
		VerityJSONPath: verityJSON,
		StopGrace:      Duration(5 * time.Second),
		// argon2id (64 MiB) takes minutes under TCG; the KDF is not under test.
		LUKSKDF: &KDF{Type: "pbkdf2", Iterations: 1000},
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	app := func(script string) Config {
		c := base
		c.App = App{Entrypoint: []string{"/bin/sh", "-c"}, Cmd: []string{script}, Env: []string{"PATH=/bin"}}
		return c
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	if err := Run(ctx, app("echo persisted > /data && test -c /dev/null"), log); err != nil {
		t.Fatalf("first launch: %v", err)
	}
	checkClean(t)
	head := make([]byte, 6)
	if f, err := os.Open(run); err == nil {
		f.ReadAt(head, 0)
		f.Close()
	}
	if !bytes.Equal(head, luksMagic1) {
		t.Fatalf("run image starts with %q after the first launch, want a LUKS header", head)
	}

	if err := Run(ctx, app(`test "$(cat /data)" = persisted`), log); err != nil {
		t.Fatalf("second launch (data must persist): %v", err)
	}
	checkClean(t)

	var ee *ExitError
	if err := Run(ctx, app("exit 7"), log); !errors.As(err, &ee) || ee.Code != 7 {
		t.Fatalf("application exit 7: Run = %v", err)
	}
	checkClean(t)

	// A daemon left behind would keep the overlay busy: it must be stopped.
	if err := Run(ctx, app("sleep 600 >/dev/null 2>&1 & exit 0"), log); err != nil {
		t.Fatalf("application leaving a background process: %v", err)
	}
	checkClean(t)

	before := sum(t, run)
	wrong := app("true")
	wrong.Key = "file:" + otherKey
	if err := Run(ctx, wrong, log); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("wrong key: Run = %v, want ErrWrongKey", err)
	}
	checkClean(t)
	if sum(t, run) != before {
		t.Fatal("a failed unlock changed the run image")
	}

	bad := *params
	bad.RootHash = append(verity.HexBytes{}, params.RootHash...)
	bad.RootHash[0] ^= 0xff
	badCmdline, badJSON := pinFiles(t, &bad)
	tampered := app("true")
	tampered.CmdlinePath, tampered.VerityJSONPath = badCmdline, badJSON
	if err := Run(ctx, tampered, log); !errors.Is(err, ErrRootHashMismatch) {
		t.Fatalf("wrong root hash: Run = %v, want ErrRootHashMismatch", err)
	}
	checkClean(t)
}

// checkClean fails if a dm device or NBD connection outlived Run.
func checkClean(t *testing.T) {
	t.Helper()
	for _, name := range []string{imageVolumeName, runVolumeName} {
		if info, err := dm.DeviceInfo(context.Background(), name); !errors.Is(err, dm.ErrNotFound) {
			t.Fatalf("mapped device %s left behind: %+v, %v", name, info, err)
		}
	}
	nl, err := nbdkernel.Dial()
	if err != nil {
		t.Fatal(err)
	}
	defer nl.Close()
	for range 100 {
		st, err := nl.Status(context.Background(), nbdkernel.AnyIndex)
		if err != nil {
			t.Fatal(err)
		}
		busy := false
		for _, s := range st {
			busy = busy || s.Connected
		}
		if !busy {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("NBD devices still connected after Run")
}

// restartable runs our NBD server on vsock loopback port and returns a
// function that stops it (closing every connection) and waits.
func restartable(t *testing.T, port uint32, exports ...*nbd.Export) func() {
	t.Helper()
	srv, err := nbd.NewServer(exports, nbd.Options{})
	if err != nil {
		t.Fatal(err)
	}
	l, err := vsock.ListenContextID(1, port, nil)
	itest.Need(t, "vsock loopback listener", err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(ctx, l)
	}()
	var once bool
	stop := func() {
		if once {
			return
		}
		once = true
		cancel()
		l.Close()
		<-done
	}
	t.Cleanup(stop)
	return stop
}

// readDirect reads n bytes at off from dev, bypassing the page cache so the
// read really goes to the server.
func readDirect(dev string, off int64, n int) ([]byte, error) {
	f, err := os.OpenFile(dev, os.O_RDONLY|unix.O_DIRECT, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	buf := make([]byte, n+4096)
	start := 0
	if r := int(uintptrOf(buf) % 4096); r != 0 {
		start = 4096 - r
	}
	b := buf[start : start+n]
	_, err = f.ReadAt(b, off)
	return b, err
}

// TestIntegrationReconnect restarts the NBD server under an attached
// device: the kernel marks the link dead, Reconnect redials and hands the
// kernel a new socket, and I/O resumes without an error.
func TestIntegrationReconnect(t *testing.T) {
	needKernel(t)
	data := make([]byte, 4<<20)
	for i := range data {
		data[i] = byte(i/512 + 3)
	}
	path := filepath.Join(t.TempDir(), "disk.img")
	os.WriteFile(path, data, 0o600)
	const port = 20200
	export := fileExport(t, "disk", path, true, 0) // the backend outlives the server
	stop := restartable(t, port, export)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	nl, err := nbdkernel.Dial()
	if err != nil {
		t.Fatal(err)
	}
	defer nl.Close()
	cfg := Config{Parent: fmt.Sprintf("vsock://1:%d", port), Timeout: Duration(10 * time.Second), DeadConnTimeout: Duration(60 * time.Second)}
	undo := NewUndo(nil)
	defer undo.Unwind(ctx)
	a, err := AttachExport(ctx, nl, cfg, "disk", false, undo)
	if err != nil {
		t.Fatalf("AttachExport: %v", err)
	}
	w, err := nbdkernel.NewWatcher()
	if err != nil {
		t.Fatalf("NewWatcher: %v", err)
	}
	rctx, rstop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		Reconnect(rctx, w, nl, cfg, []*Attached{a}, slog.New(slog.NewTextHandler(os.Stderr, nil)))
	}()
	defer func() { rstop(); w.Close(); <-done }()

	if b, err := readDirect(a.Path, 0, 4096); err != nil || !bytes.Equal(b, data[:4096]) {
		t.Fatalf("read before the restart: %v", err)
	}
	stop()
	// Give the kernel a moment to see the connection die, then bring the
	// server back on the same port.
	time.Sleep(time.Second)
	restartable(t, port, export)
	b, err := readDirect(a.Path, 2<<20, 8192)
	if err != nil || !bytes.Equal(b, data[2<<20:2<<20+8192]) {
		t.Fatalf("read after the server restart: %v (data equal: %v)", err, err == nil && bytes.Equal(b, data[2<<20:2<<20+8192]))
	}
	st, err := nl.Status(ctx, int(a.Index))
	if err != nil || len(st) != 1 || !st[0].Connected {
		t.Fatalf("Status after reconnect = %+v, %v", st, err)
	}
}

// TestIntegrationCommandSIGTERM runs the nbd-enclave binary (the harness
// puts it in /bin) on a run volume prepared by a first in-process launch,
// sends it SIGTERM while the application sleeps, and expects the
// application stopped, a clean exit and nothing left mapped or connected.
func TestIntegrationCommandSIGTERM(t *testing.T) {
	needKernel(t)
	bin, err := exec.LookPath("nbd-enclave")
	itest.Need(t, "nbd-enclave binary", err)
	img, params := image(t)
	cmdline, verityJSON := pinFiles(t, params)
	run := filepath.Join(t.TempDir(), "run.img")
	parent := serve(t, fileExport(t, "image", img, true, 0), fileExport(t, "run", run, false, 64<<20))
	key := filepath.Join(t.TempDir(), "key")
	os.WriteFile(key, []byte("command test key"), 0o600)
	mnt := t.TempDir()
	cfg := Config{
		Parent: parent, Key: "file:" + key,
		LowerDir: filepath.Join(mnt, "lower"), UpperDir: filepath.Join(mnt, "upper"), RootDir: filepath.Join(mnt, "root"),
		CmdlinePath: cmdline, VerityJSONPath: verityJSON,
		App:     App{Entrypoint: []string{"/bin/sh", "-c", "echo first > /data"}, Env: []string{"PATH=/bin"}},
		LUKSKDF: &KDF{Type: "pbkdf2", Iterations: 1000},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := Run(ctx, cfg, slog.New(slog.NewTextHandler(os.Stderr, nil))); err != nil {
		t.Fatalf("preparing the run volume: %v", err)
	}

	cmd := exec.CommandContext(ctx, bin,
		"--config", filepath.Join(t.TempDir(), "none.json"), // explicit and missing: must fail
		"--parent", parent)
	if out, err := cmd.CombinedOutput(); err == nil {
		t.Fatalf("nbd-enclave with a missing --config succeeded: %s", out)
	}

	var out syncbuf.Buffer
	cmd = exec.CommandContext(ctx, bin,
		"--parent", parent, "--key", "file:"+key,
		"--lower", cfg.LowerDir, "--upper", cfg.UpperDir, "--root", cfg.RootDir,
		"--cmdline", cmdline, "--verity-json", verityJSON, "--stop-grace", "5s",
		"--", "/bin/sh", "-c", `test "$(cat /data)" = first && echo app-is-ready && exec sleep 600`)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Not "ready": the agent logs "control listener ready" before the
	// application exists.
	for !strings.Contains(out.String(), "app-is-ready") {
		if ctx.Err() != nil {
			t.Fatalf("application never became ready:\n%s", out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := cmd.Process.Signal(unix.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("nbd-enclave after SIGTERM: %v\n%s", err, out.String())
	}
	checkClean(t)
	t.Logf("nbd-enclave output:\n%s", out.String())
}
