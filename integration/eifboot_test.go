//go:build integration

package integration

import (
	"bytes"
	"context"
	"crypto/rand"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/enclave-storage/enclave-storage/eif"
	"github.com/enclave-storage/enclave-storage/imgsrc/ocitest"
)

var eifBoot = flag.String("eifboot", "auto", "TestEIFBoot, booting an imgbuild EIF twice: on, off, or auto (on unless -host, -guest.pkgs or -guest.run narrow the run)")

// eifApp is the application the EIF runs: it reports what init gave it
// (environment, working directory, user, system mounts) and counts its
// launches in a file on the run volume.
const eifApp = `echo "EIFBOOT-APP uid=$(id -u) pwd=$(pwd) PATH=$PATH GREETING=$GREETING tmp=$(stat -f -c %T /tmp) run=$(stat -f -c %T /run) shm=$(stat -f -c %T /dev/shm) pts=$(test -e /dev/pts/ptmx && echo yes) fd=$(readlink /dev/fd)"
n=1
[ -f count ] && n=$(($(cat count) + 1))
echo $n > count
sync
echo "EIFBOOT-APP launch=$n"`

// TestEIFBoot builds an EIF with imgbuild (Debian's kernel as --kernel,
// nbd-enclave as --init, Debian's modules as --kernel-modules), reads its kernel, cmdline and ramdisk sections
// back with package eif and boots exactly those in QEMU, twice against
// the same run image, with nbd-enclave as PID 1. The parent side (the
// kernel modules, nbd-parent and a heartbeat echo playing nitro-cli) comes
// from a test-only archive appended after the EIF's ramdisks; see
// ParentRamdisk for how it takes /init without touching the EIF.
func TestEIFBoot(t *testing.T) {
	switch {
	case *eifBoot == "off":
		t.Skip("-eifboot=off")
	case *eifBoot == "auto" && (*hostMode || *guestPkgs != "" || *guestRun != ""):
		t.Skip("a narrowed run (-host, -guest.pkgs or -guest.run); -eifboot=on forces it")
	case *hostMode:
		t.Skip("-host: the EIF boot needs QEMU")
	}
	ctx, cancel := context.WithTimeout(context.Background(), *vmTimeout)
	defer cancel()
	moduleDir, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	share := newShare(t, "eifboot-")

	t0 := time.Now()
	cmds, err := BuildCommands(ctx, moduleDir, work, []string{"nbd-enclave", "nbd-parent", "imgbuild"})
	if err != nil {
		t.Fatal(err)
	}
	echo := filepath.Join(work, "heartbeat-echo")
	if _, err := goCmd(ctx, moduleDir, "build", "-trimpath", "-o", echo, "./integration/heartbeat-echo"); err != nil {
		t.Fatal(err)
	}
	k, err := FetchKernel(ctx, *cacheDir)
	if err != nil {
		t.Fatal(err)
	}
	// The parent side's modules; nbd-enclave loads the enclave's from
	// the EIF.
	mods, err := k.ModulePaths(ctx, "vsock_loopback", "virtio_pci", "9pnet_virtio", "9p")
	if err != nil {
		t.Fatal(err)
	}

	// The EIF: the application image, nbd-enclave's measured config
	// (loopback addresses, a key file from the test archive, a cheap
	// keyslot KDF) and Debian's modules (imgbuild --kernel-modules).
	layout := writeEIFApp(t, work)
	cfg := filepath.Join(work, "enclave.json")
	// A cheap keyslot KDF: argon2id's 64 MiB take about two minutes per
	// format or unlock under TCG.
	if err := os.WriteFile(cfg, []byte(`{"parent": "vsock://1:10809", "heartbeat": "vsock://1:9000",
		"key": "file:/itest/run.key",
		"luks_kdf": {"type": "pbkdf2", "iterations": 1000}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	t1 := time.Now()
	out, err := exec.CommandContext(ctx, cmds["imgbuild"], "--in", "oci:"+layout+":app", "--out", share,
		"--kernel", k.Image, "--init", cmds["nbd-enclave"], "--enclave-config", cfg,
		"--kernel-modules", k.Root,
		"--cmdline", "console=ttyS0 reboot=k panic=-1 nomodules quiet").CombinedOutput()
	if err != nil {
		t.Fatalf("imgbuild: %v\n%s", err, out)
	}
	t.Logf("imgbuild built %s from %s in %v", eif.RamdiskEnclavePath, k.Image, time.Since(t1).Round(time.Millisecond))

	key := make([]byte, 64)
	rand.Read(key)
	pr := &ParentRamdisk{
		Modules:  mods,
		Commands: map[string]string{"nbd-parent": cmds["nbd-parent"], "heartbeat-echo": echo},
		Files:    map[string][]byte{"run.key": key},
		EIFInit:  "/" + eif.RamdiskEnclavePath,
	}
	parentCpio := filepath.Join(work, "parent.cpio")
	f, err := os.Create(parentCpio)
	if err != nil {
		t.Fatal(err)
	}
	if err := pr.Write(ctx, f); err != nil {
		t.Fatal(err)
	}
	f.Close()
	boot, err := ExtractEIF(ctx, filepath.Join(share, "enclave.eif"), work, parentCpio)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("EIF: cmdline %q, ramdisk sections %v bytes; setup took %v", boot.Cmdline, boot.Ramdisks, time.Since(t0).Round(time.Millisecond))

	for launch := 1; launch <= 2; launch++ {
		var console bytes.Buffer
		ll := &lineLogger{t: t}
		vm := &VM{Accel: *vmAccel, Kernel: boot.Kernel, Initrd: boot.Initrd, Cmdline: boot.Cmdline, ShareDir: share}
		t2 := time.Now()
		_, err := vm.Run(ctx, io.MultiWriter(&console, ll))
		ll.flush()
		if err != nil {
			t.Fatalf("launch %d: %v", launch, err)
		}
		t.Logf("launch %d: the VM ran %v", launch, time.Since(t2).Round(time.Millisecond))
		checkEIFLaunch(t, launch, console.String())
		if t.Failed() {
			return
		}
	}
}

// checkEIFLaunch checks one boot's console.
func checkEIFLaunch(t *testing.T, launch int, console string) {
	t.Helper()
	// In order: what must happen, each after the one before.
	steps := []string{
		`eifboot: test ramdisk loaded [1-9][0-9]* modules`,
		`eifboot: exec /usr/bin/nbd-enclave as PID 1`,
		`msg="init system ready"`,
		`msg="kernel modules loaded" count=[1-9]`,
		`msg="ignoring the kernel's arguments to init" args=\[nomodules\]`,
		`msg="heartbeat acknowledged" addr=vsock://1:9000`,
		`msg="client attached" export=image`,
		`msg="client attached" export=run`,
		`msg="run volume mounted" .* new=` + fmt.Sprint(launch == 1),
		`EIFBOOT-APP uid=1000 pwd=/srv PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin GREETING=hello from the image tmp=tmpfs run=tmpfs shm=tmpfs pts=yes fd=/proc/self/fd`,
		fmt.Sprintf(`EIFBOOT-APP launch=%d`, launch),
		`msg="application exited" status=0`,
		`msg="client detached" export=run`,
		`msg="rebooting to end the enclave" status=0`,
		`reboot: Restarting system`,
	}
	rest := console
	for _, s := range steps {
		loc := regexp.MustCompile(s).FindStringIndex(rest)
		if loc == nil {
			t.Errorf("launch %d: no %q after the previous step", launch, s)
			return
		}
		rest = rest[loc[1]:]
	}
	// The parent's side of the heartbeat, before its first NBD client.
	hb, nbd := strings.Index(console, `msg="heartbeat received and echoed"`), strings.Index(console, `msg="client attached"`)
	if hb < 0 || hb > nbd {
		t.Errorf("launch %d: the heartbeat echo did not log a heartbeat before the first NBD connection", launch)
	}
	formatted := regexp.MustCompile(`msg="run volume formatted" device=/dev/mapper/run fs=ext4`).MatchString(console)
	if formatted != (launch == 1) {
		t.Errorf("launch %d: formatted the run volume: %v", launch, formatted)
	}
	if strings.Contains(console, "level=ERROR") {
		t.Errorf("launch %d: an ERROR was logged", launch)
	}
}

// writeEIFApp writes the application's OCI layout: busybox, a /srv owned
// by uid 1000, and a config with an Env lacking PATH, a WorkingDir and a
// User, which nbd-enclave must honour.
func writeEIFApp(t *testing.T, dir string) string {
	t.Helper()
	b, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Skipf("busybox not installed (apt-get install busybox-static): %v", err)
	}
	bb := ocitest.File("bin/busybox", "")
	bb.Body, bb.Mode = b, 0o755
	entries := []ocitest.Entry{ocitest.Dir("bin/"), bb}
	for _, a := range []string{"sh", "echo", "id", "stat", "test", "readlink", "cat", "sync"} {
		entries = append(entries, ocitest.Symlink("bin/"+a, "busybox"))
	}
	srv := ocitest.Dir("srv/")
	srv.Uid, srv.Gid = 1000, 1000
	entries = append(entries, srv)
	layer, err := ocitest.Tar(entries...)
	if err != nil {
		t.Fatal(err)
	}
	layout := filepath.Join(dir, "oci")
	if _, err := ocitest.WriteLayout(layout, "app", ocitest.Image{
		Layers: [][]byte{layer}, Compression: ocitest.Gzip, Created: ocitest.T0(),
		Config: v1.ImageConfig{
			Entrypoint: []string{"/bin/sh", "-c"}, Cmd: []string{eifApp},
			Env: []string{"GREETING=hello from the image"}, WorkingDir: "/srv", User: "1000:1000",
		},
	}); err != nil {
		t.Fatal(err)
	}
	return layout
}
