package imgbuild_test

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"github.com/enclave-storage/enclave-storage/pin"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/enclave-storage/enclave-storage/eif"
	"github.com/enclave-storage/enclave-storage/erofs"
	"github.com/enclave-storage/enclave-storage/imgbuild"
	"github.com/enclave-storage/enclave-storage/imgsrc/ocitest"
	"github.com/enclave-storage/enclave-storage/layer"
	"github.com/enclave-storage/enclave-storage/verity"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

func mustTar(t *testing.T, e ...ocitest.Entry) []byte {
	t.Helper()
	b, err := ocitest.Tar(e...)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func with(e ocitest.Entry, f func(h *tar.Header)) ocitest.Entry { f(&e.Header); return e }

// appImage is a three-layer image exercising what flattening must get
// right; appBody is the content of /app/server.
func appImage(t *testing.T, appBody string) ocitest.Image {
	return ocitest.Image{
		Layers: [][]byte{
			mustTar(t,
				ocitest.Dir("bin"), ocitest.File("bin/busybox", "BUSYBOX"), ocitest.Link("bin/sh", "bin/busybox"),
				ocitest.Dir("etc"), ocitest.File("etc/passwd", "root:x:0:0::/root:/bin/sh\n"), ocitest.File("etc/old.conf", "old"),
				ocitest.Dir("var/cache"), ocitest.File("var/cache/a", "a"), ocitest.File("var/cache/b", "b"),
				ocitest.Symlink("lib", "usr/lib"), ocitest.Dir("usr/lib"),
				with(ocitest.Entry{}, func(h *tar.Header) {
					*h = tar.Header{Typeflag: tar.TypeChar, Name: "dev/null", Mode: 0o666, Devmajor: 1, Devminor: 3, ModTime: ocitest.T0()}
				}),
			),
			mustTar(t,
				ocitest.Whiteout("etc", "old.conf"),
				ocitest.Whiteout("var/cache", ".wh..opq"), ocitest.File("var/cache/c", "c"),
				ocitest.File("lib/libapp.so", "LIB"), // through the lib -> usr/lib symlink
				with(ocitest.File("usr/bin/ping", "PING"), func(h *tar.Header) {
					h.Mode = 0o4755
					h.PAXRecords = map[string]string{"SCHILY.xattr.security.capability": capNetRaw}
				}),
			),
			mustTar(t,
				with(ocitest.File("app/server", appBody), func(h *tar.Header) { h.Mode, h.Uid, h.Gid = 0o750, 1000, 1000 }),
			),
		},
		Compression: ocitest.Gzip,
		Config:      v1.ImageConfig{Entrypoint: []string{"/app/server"}, Cmd: []string{"--port", "80"}, Env: []string{"PATH=/bin"}, User: "1000"},
		Created:     time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC),
	}
}

func layout(t *testing.T, img ocitest.Image) string {
	t.Helper()
	dir := t.TempDir()
	if _, err := ocitest.WriteLayout(dir, "app", img); err != nil {
		t.Fatal(err)
	}
	return "oci:" + dir + ":app"
}

func build(t *testing.T, ref string, mod func(*imgbuild.Options)) *imgbuild.Result {
	t.Helper()
	o := imgbuild.Options{Ref: ref, OutDir: t.TempDir()}
	if mod != nil {
		mod(&o)
	}
	res, err := imgbuild.Build(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestBuild(t *testing.T) {
	var events []imgbuild.Event
	res := build(t, layout(t, appImage(t, "SERVER v1")), func(o *imgbuild.Options) {
		o.Progress = func(e imgbuild.Event) { events = append(events, e) }
	})
	m := res.Manifest
	if m.FSType != "erofs" || m.FSSize <= 0 || m.FSSize%4096 != 0 || m.Verity.HashOffset != uint64(m.FSSize) {
		t.Fatalf("manifest: %+v", m)
	}
	if !slices.Equal(m.App.Entrypoint, []string{"/app/server"}) || m.App.User != "1000" || m.Image.Layers != 3 {
		t.Errorf("manifest app/image: %+v %+v", m.App, m.Image)
	}
	if m.SourceDateEpoch != time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC).Unix() {
		t.Errorf("source_date_epoch = %d, want the image's creation time", m.SourceDateEpoch)
	}
	// Start and end of 5 steps, and one event per layer.
	if len(events) != 13 || !events[12].Done || events[12].Step != imgbuild.StepManifest ||
		events[5].Step != imgbuild.StepFlatten || !strings.HasPrefix(events[5].Detail, "layer 3/3 sha256:") {
		t.Errorf("progress events: %+v", events)
	}

	// The manifest on disk is what Result says.
	var onDisk imgbuild.Manifest
	b, err := os.ReadFile(res.ManifestPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &onDisk); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(onDisk.Verity.RootHash, m.Verity.RootHash) {
		t.Errorf("rootfs.verity.json root hash differs")
	}

	// The appended tree verifies, as the kernel would check it.
	if _, err := verity.VerifyFile(context.Background(), res.Rootfs, res.Rootfs, m.Verity.HashOffset, m.Verity.RootHash, nil); err != nil {
		t.Fatalf("verity: %v", err)
	}

	// The filesystem holds the flattened image.
	f, err := os.Open(res.Rootfs)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fs, err := erofs.Open(f, m.FSSize)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ path, body string }{
		{"bin/sh", "BUSYBOX"}, {"etc/passwd", "root:x:0:0::/root:/bin/sh\n"}, {"var/cache/c", "c"},
		{"usr/lib/libapp.so", "LIB"}, {"app/server", "SERVER v1"},
	} {
		got, err := fs.ReadFile(c.path)
		if err != nil || string(got) != c.body {
			t.Errorf("%s: %q, %v; want %q", c.path, got, err, c.body)
		}
	}
	for _, gone := range []string{"etc/old.conf", "var/cache/a", "var/cache/b"} {
		if _, err := fs.Lookup(gone); err == nil {
			t.Errorf("%s survived its whiteout", gone)
		}
	}
	sh, err := fs.Lookup("bin/sh")
	if err != nil {
		t.Fatal(err)
	}
	bb, err := fs.Lookup("bin/busybox")
	if err != nil {
		t.Fatal(err)
	}
	if sh.Nid != bb.Nid || sh.Nlink != 2 {
		t.Errorf("bin/sh is not a hard link of bin/busybox: nid %d vs %d, nlink %d", sh.Nid, bb.Nid, sh.Nlink)
	}
	if l, err := fs.Readlink("lib"); err != nil || l != "usr/lib" {
		t.Errorf("lib -> %q, %v", l, err)
	}
	if null, err := fs.Lookup("dev/null"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("dev/null: %+v, %v; want it dropped by the default policy", null, err)
	}
	app, err := fs.Lookup("app/server")
	if err != nil || app.UID != 1000 || app.GID != 1000 || app.Mode&0o7777 != 0o750 {
		t.Errorf("app/server: %+v, %v", app, err)
	}
	ping, err := fs.Lookup("usr/bin/ping")
	if err != nil {
		t.Fatal(err)
	}
	xa, err := fs.Xattrs(ping)
	if err != nil || ping.Mode&0o7777 != 0o4755 || string(xa["security.capability"]) != capNetRaw {
		t.Errorf("usr/bin/ping: mode %o xattrs %q, %v", ping.Mode, xa, err)
	}
}

// TestReproducible builds the same image twice (into different
// directories, at different times) and checks every output byte is equal;
// then changes one byte of one file and checks the root hash changes even
// with the salt held fixed.
func TestReproducible(t *testing.T) {
	ref := layout(t, appImage(t, "SERVER v1"))
	a := build(t, ref, nil)
	b := build(t, ref, nil)
	for _, name := range []string{imgbuild.RootfsFile, imgbuild.ManifestFile} {
		x, err := os.ReadFile(filepath.Join(filepath.Dir(a.Rootfs), name))
		if err != nil {
			t.Fatal(err)
		}
		y, err := os.ReadFile(filepath.Join(filepath.Dir(b.Rootfs), name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(x, y) {
			t.Errorf("%s differs between two builds of the same image", name)
		}
	}
	salt := []byte("fixed salt")
	c := build(t, ref, func(o *imgbuild.Options) { o.Salt = salt })
	d := build(t, layout(t, appImage(t, "SERVER v2")), func(o *imgbuild.Options) { o.Salt = salt })
	if bytes.Equal(c.Manifest.Verity.RootHash, d.Manifest.Verity.RootHash) {
		t.Errorf("changing one byte of app/server left the root hash at %x", []byte(c.Manifest.Verity.RootHash))
	}
	if c.Manifest.FSSize != d.Manifest.FSSize {
		t.Errorf("one changed byte changed the filesystem size %d -> %d", c.Manifest.FSSize, d.Manifest.FSSize)
	}
}

func TestBuildEIF(t *testing.T) {
	dir := t.TempDir()
	kernel := filepath.Join(dir, "bzImage")
	initBin := filepath.Join(dir, "nbd-enclave")
	cfg := filepath.Join(dir, "enclave.json")
	if err := os.WriteFile(kernel, bytes.Repeat([]byte("KERNEL"), 1000), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(initBin, []byte("\x7fELF not really"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg, []byte(`{"key":"file:/etc/k","parent":"vsock://3:10809"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	ref := layout(t, appImage(t, "SERVER v1"))
	opts := func(o *imgbuild.Options) {
		o.Kernel, o.Init, o.Cmdline, o.EnclaveConfig = kernel, initBin, "console=ttyS0", cfg
	}
	res := build(t, ref, opts)
	f, err := os.Open(res.EIF)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	ef, err := eif.Read(f, st.Size())
	if err != nil {
		t.Fatal(err)
	}
	if !ef.CRCValid() {
		t.Error("EIF CRC invalid")
	}
	// As nitro-cli writes them: the name without its tag, the version the
	// image ID (config digest without "sha256:").
	if m := ef.Metadata; m == nil || m.ImageVersion != res.Manifest.Image.ConfigDigest.Encoded() || m.ImageName == "" || strings.Contains(m.ImageName, "oci:") {
		t.Errorf("EIF metadata %+v: want ImageVersion %s and a tagless ImageName", m, res.Manifest.Image.ConfigDigest.Encoded())
	}
	cmdline := ef.Cmdline
	root, err := pin.VerityRoot(cmdline)
	if err != nil || !bytes.Equal(root, res.Manifest.Verity.RootHash) || !strings.HasPrefix(cmdline, "console=ttyS0 ") {
		t.Errorf("cmdline %q: root %x, %v; want %x", cmdline, root, err, []byte(res.Manifest.Verity.RootHash))
	}
	var pj eif.Measurements
	b, err := os.ReadFile(res.PCRs)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &pj); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(pj.Measurements.PCR0, ef.PCRs.PCR0) || !bytes.Equal(pj.Measurements.PCR2, ef.PCRs.PCR2) || len(pj.Measurements.PCR0) != 48 {
		t.Errorf("pcrs.json PCR0 %x, recomputed from the EIF %x", []byte(pj.Measurements.PCR0), []byte(ef.PCRs.PCR0))
	}
	checkKeyPolicy(t, filepath.Join(filepath.Dir(res.PCRs), imgbuild.KeyPolicyFile), pj.Measurements)
	if res.KeyPolicy != filepath.Join(filepath.Dir(res.PCRs), imgbuild.KeyPolicyFile) {
		t.Errorf("Result.KeyPolicy = %q", res.KeyPolicy)
	}
	// Reproducible too.
	res2 := build(t, ref, opts)
	x, _ := os.ReadFile(res.EIF)
	y, _ := os.ReadFile(res2.EIF)
	if !bytes.Equal(x, y) {
		t.Error("two EIF builds differ")
	}
	// One changed byte of one file of the image: a new root hash, so new
	// PCR0 and PCR2 (the ramdisk's verity.json) and PCR1 (the cmdline).
	changed := build(t, layout(t, appImage(t, "SERVER v2")), opts)
	pcrs := func(r *imgbuild.Result) eif.PCRs {
		b, err := os.ReadFile(r.PCRs)
		if err != nil {
			t.Fatal(err)
		}
		var m eif.Measurements
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		return m.Measurements
	}
	p1, p2 := pcrs(res), pcrs(changed)
	if bytes.Equal(p1.PCR0, p2.PCR0) || bytes.Equal(p1.PCR1, p2.PCR1) || bytes.Equal(p1.PCR2, p2.PCR2) {
		t.Errorf("one changed byte in the image left a PCR unchanged:\n%x %x %x\n%x %x %x",
			[]byte(p1.PCR0), []byte(p1.PCR1), []byte(p1.PCR2), []byte(p2.PCR0), []byte(p2.PCR1), []byte(p2.PCR2))
	}
	// A later build without a kernel into the same directory must not
	// leave the old EIF next to a new rootfs.img.
	out := filepath.Dir(res.EIF)
	if _, err := imgbuild.Build(context.Background(), imgbuild.Options{Ref: ref, OutDir: out}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{imgbuild.EIFFile, imgbuild.PCRsFile} {
		if _, err := os.Stat(filepath.Join(out, name)); err == nil {
			t.Errorf("stale %s left in %s", name, out)
		}
	}
}

func TestBuildErrors(t *testing.T) {
	bad := ocitest.Image{Layers: [][]byte{mustTar(t, ocitest.File("../../etc/passwd", "x"))}}
	ref := layout(t, bad)
	out := t.TempDir()
	_, err := imgbuild.Build(context.Background(), imgbuild.Options{Ref: ref, OutDir: out})
	if err == nil || !strings.Contains(err.Error(), "../../etc/passwd") || !strings.Contains(err.Error(), "sha256:") {
		t.Fatalf("err = %v, want one naming the entry and the layer digest", err)
	}
	if _, serr := os.Stat(filepath.Join(out, imgbuild.RootfsFile)); serr == nil {
		t.Error("a failed build left rootfs.img")
	}
	if _, err := imgbuild.Build(context.Background(), imgbuild.Options{Ref: ref, OutDir: out, Kernel: "k"}); err == nil {
		t.Error("kernel without init accepted")
	}
}

// capNetRaw is a valid security.capability value (VFS_CAP_REVISION_2,
// effective, permitted CAP_NET_RAW): the kernel refuses malformed ones.
const capNetRaw = "\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"

// TestBuildMatchesSteps: Build, which hashes the verity tree while the
// filesystem is written, gives the rootfs.img and parameters of the steps
// run one after the other (WriteFS, then AppendVerity reading the image
// back), on an image of several MiB so that the tree sees many chunks.
func TestBuildMatchesSteps(t *testing.T) {
	img := appImage(t, "server")
	big := bytes.Repeat([]byte("0123456789abcdef"), 3<<20/16+77)
	img.Layers = append(img.Layers, mustTar(t, ocitest.File("opt/big", string(big)), ocitest.File("opt/small", "tail")))
	ref := layout(t, img)
	res := build(t, ref, nil)

	ctx := context.Background()
	im, err := imgbuild.OpenImage(ctx, ref, "")
	if err != nil {
		t.Fatal(err)
	}
	defer im.Close()
	dir := t.TempDir()
	fl, err := imgbuild.Flatten(ctx, im, layer.Options{SpoolDir: dir}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer fl.Close()
	path := filepath.Join(dir, "rootfs.img")
	st, err := imgbuild.WriteFS(ctx, fl, path, time.Unix(res.Manifest.SourceDateEpoch, 0))
	if err != nil {
		t.Fatal(err)
	}
	p, err := imgbuild.AppendVerity(ctx, path, st, imgbuild.DeriveSalt(im.ConfigDigest))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(p.RootHash, res.Manifest.Verity.RootHash) || p.UUID != res.Manifest.Verity.UUID {
		t.Errorf("steps: root %x uuid %s; Build: root %x uuid %s", []byte(p.RootHash), p.UUID, []byte(res.Manifest.Verity.RootHash), res.Manifest.Verity.UUID)
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(res.Rootfs)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("Build's rootfs.img (%d bytes) differs from the steps' (%d bytes)", len(got), len(want))
	}
}
