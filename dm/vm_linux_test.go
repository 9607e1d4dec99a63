//go:build integration && linux

package dm_test

// Kernel tests of package dm; they run in the integration microVM (make
// integration) and skip elsewhere unless /dev/mapper/control is there.

import (
	"bytes"
	"context"
	"crypto/aes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/enclave-storage/enclave-storage/dm"
	"github.com/enclave-storage/enclave-storage/integration/itest"
	"github.com/enclave-storage/enclave-storage/verity"
	"golang.org/x/crypto/xts"
	"golang.org/x/sys/unix"
)

func needDM(t *testing.T) context.Context {
	t.Helper()
	itest.NeedRoot(t)
	itest.NeedPath(t, "/dev/loop-control")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	// The node may exist without the driver (ENODEV), so ask the kernel.
	_, err := dm.Version(ctx)
	itest.Need(t, "device-mapper", err)
	return ctx
}

// pattern returns n deterministic, non-repeating bytes.
func pattern(n int, seed uint64) []byte {
	b := make([]byte, n)
	x := seed | 1
	for i := 0; i < n; i += 8 {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		binary.LittleEndian.PutUint64(b[i:], x)
	}
	return b
}

func attach(t *testing.T, ctx context.Context, file string, readOnly bool) *itest.Loop {
	t.Helper()
	l, err := itest.AttachLoop(ctx, file, readOnly)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// create is dm.Create that removes the device when the test ends.
func create(t *testing.T, ctx context.Context, name string, readOnly bool, targets ...dm.Target) string {
	t.Helper()
	path, err := dm.Create(ctx, name, "TEST-"+name, readOnly, targets...)
	if err != nil {
		t.Fatalf("Create %s: %v", name, err)
	}
	t.Cleanup(func() {
		if _, err := dm.DeviceInfo(context.Background(), name); errors.Is(err, dm.ErrNotFound) {
			return
		}
		if err := dm.Remove(context.Background(), name); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return path
}

func readAll(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}

func TestVersion(t *testing.T) {
	ctx := needDM(t)
	v, err := dm.Version(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("device-mapper ioctl interface %d.%d.%d", v[0], v[1], v[2])
	if v[0] != 4 {
		t.Errorf("major version %d, want 4", v[0])
	}
}

// TestVerity maps an image whose tree our verity package appended, reads it
// back through dm-verity, then flips one data byte and expects EIO on that
// block only.
func TestVerity(t *testing.T) {
	ctx := needDM(t)
	const blocks = 300 // two levels of tree with sha256 and 4 KiB blocks
	data := pattern(blocks*4096, 1)
	img := filepath.Join(t.TempDir(), "root.img")
	if err := os.WriteFile(img, data, 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := verity.FormatFile(ctx, img, img, verity.Options{HashOffset: uint64(len(data))})
	if err != nil {
		t.Fatal(err)
	}
	target := func(dev string, root []byte) dm.VerityTarget {
		return dm.VerityTarget{
			DataDevice: dev, HashDevice: dev,
			DataBlockSize: p.DataBlockSize, HashBlockSize: p.HashBlockSize,
			DataBlocks: p.DataBlocks, HashStartBlock: p.HashStartBlock(),
			Algorithm: p.Algorithm, RootHash: root, Salt: p.Salt,
		}
	}

	loop := attach(t, ctx, img, true)
	path := create(t, ctx, "itest-verity", true, target(loop.Path, p.RootHash))
	got, err := readAll(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("read %d bytes through dm-verity, differ from the %d-byte image data", len(got), len(data))
	}

	info, err := dm.DeviceInfo(ctx, "itest-verity")
	if err != nil {
		t.Fatal(err)
	}
	if !info.ReadOnly || !info.ActiveTable || info.Suspended || info.TargetCount != 1 || info.UUID != "TEST-itest-verity" {
		t.Errorf("info %+v: want read-only, active, resumed, 1 target, our UUID", info)
	}
	st, err := dm.Status(ctx, "itest-verity")
	if err != nil {
		t.Fatal(err)
	}
	if len(st) != 1 || st[0].Type != "verity" || st[0].Params != "V" {
		t.Errorf("status %+v, want one verity target with status V", st)
	}
	table, err := dm.Table(ctx, "itest-verity")
	if err != nil {
		t.Fatal(err)
	}
	want, _ := target(loop.DevString(), p.RootHash).TableLine()
	if len(table) != 1 || table[0] != want {
		t.Errorf("kernel table %+v\nwant        %+v", table, want)
	}
	devs, err := dm.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(devs, dm.Device{Name: "itest-verity", Dev: info.Dev}) {
		t.Errorf("List() = %v, lacks itest-verity %s", devs, info.Dev)
	}

	if err := dm.Remove(ctx, "itest-verity"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s still there after Remove: %v", path, err)
	}
	if _, err := dm.DeviceInfo(ctx, "itest-verity"); !errors.Is(err, dm.ErrNotFound) {
		t.Errorf("DeviceInfo after Remove: %v, want ErrNotFound", err)
	}

	t.Run("wrong root hash", func(t *testing.T) {
		bad := slices.Clone(p.RootHash)
		bad[0] ^= 1
		path := create(t, ctx, "itest-verity-badroot", true, target(loop.Path, bad))
		if _, err := readAll(path); !errors.Is(err, unix.EIO) {
			t.Errorf("read with a wrong root hash: %v, want EIO", err)
		}
	})

	t.Run("flipped byte", func(t *testing.T) {
		const bad = 123 // block with the flipped byte
		f, err := os.OpenFile(img, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteAt([]byte{data[bad*4096+7] ^ 0x80}, bad*4096+7); err != nil {
			t.Fatal(err)
		}
		f.Close()
		path := create(t, ctx, "itest-verity-corrupt", true, target(loop.Path, p.RootHash))
		dev, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer dev.Close()
		buf := make([]byte, 4096)
		for _, blk := range []int64{0, bad - 1, bad, bad + 1, blocks - 1} {
			_, err := dev.ReadAt(buf, blk*4096)
			switch {
			case blk == bad && !errors.Is(err, unix.EIO):
				t.Errorf("block %d (corrupted): %v, want EIO", blk, err)
			case blk != bad && err != nil:
				t.Errorf("block %d: %v", blk, err)
			case blk != bad && !bytes.Equal(buf, data[blk*4096:][:4096]):
				t.Errorf("block %d: wrong data", blk)
			}
		}
		st, err := dm.Status(ctx, "itest-verity-corrupt")
		if err != nil {
			t.Fatal(err)
		}
		if len(st) != 1 || st[0].Params != "C" {
			t.Errorf("status after corruption %+v, want C", st)
		}
	})
}

// TestCrypt writes through dm-crypt, checks the ciphertext on the backing
// file against AES-XTS computed here (golang.org/x/crypto/xts, the same
// plain64 little-endian sector tweak), then reopens and reads the
// plaintext back.
func TestCrypt(t *testing.T) {
	ctx := needDM(t)
	const size = 1 << 20
	key := pattern(64, 7) // AES-256-XTS: two 256-bit keys
	plain := pattern(size, 9)
	tests := []struct {
		name       string
		sectorSize uint32
		ivLarge    bool
		ivOffset   uint64
		noWQ       bool // no_read_workqueue, no_write_workqueue (kernel 5.9+)
	}{
		{"512-byte sectors", 0, false, 0, false},
		{"4096-byte sectors, LUKS2 IVs", 4096, true, 0, false},
		{"IV offset", 0, false, 1000, false},
		{"without workqueues, as the enclave's run volume", 4096, false, 0, true},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "run.img")
			if err := os.WriteFile(file, make([]byte, size), 0o644); err != nil {
				t.Fatal(err)
			}
			loop := attach(t, ctx, file, false)
			name := fmt.Sprintf("itest-crypt-%d", i)
			target := func(dev string) dm.CryptTarget {
				return dm.CryptTarget{Length: size / dm.SectorSize, Cipher: "aes-xts-plain64", Key: key,
					IVOffset: tt.ivOffset, Device: dev, SectorSize: tt.sectorSize, IVLargeSectors: tt.ivLarge,
					NoReadWorkqueue: tt.noWQ, NoWriteWorkqueue: tt.noWQ}
			}
			path := create(t, ctx, name, false, target(loop.Path))

			table, err := dm.Table(ctx, name)
			if err != nil {
				t.Fatal(err)
			}
			if want, _ := target(loop.DevString()).TableLine(); len(table) != 1 || table[0] != want {
				t.Errorf("kernel table differs from ours:\n got %+v\nwant %+v", table, want)
			}

			dev, err := os.OpenFile(path, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := dev.WriteAt(plain, 0); err != nil {
				t.Fatal(err)
			}
			if err := dev.Sync(); err != nil {
				t.Fatal(err)
			}
			dev.Close()
			if err := dm.Remove(ctx, name); err != nil {
				t.Fatal(err)
			}

			raw, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			c, err := xts.NewCipher(aes.NewCipher, key)
			if err != nil {
				t.Fatal(err)
			}
			unit := 512
			if tt.sectorSize != 0 {
				unit = int(tt.sectorSize)
			}
			want := make([]byte, size)
			for off := 0; off < size; off += unit {
				// The IV counts 512-byte sectors unless iv_large_sectors.
				iv := uint64(off / 512)
				if tt.ivLarge {
					iv = uint64(off / unit)
				}
				c.Encrypt(want[off:off+unit], plain[off:off+unit], iv+tt.ivOffset)
			}
			if bytes.Equal(raw[:4096], plain[:4096]) {
				t.Fatal("backing file holds the plaintext")
			}
			if !bytes.Equal(raw, want) {
				t.Errorf("ciphertext on the backing file differs from AES-XTS-plain64 computed in Go")
			}

			path = create(t, ctx, name, true, target(loop.Path))
			got, err := readAll(path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, plain) {
				t.Errorf("reopened device does not read back the plaintext")
			}
		})
	}
}

func TestLinear(t *testing.T) {
	ctx := needDM(t)
	data := pattern(64<<10, 3)
	file := filepath.Join(t.TempDir(), "lin.img")
	if err := os.WriteFile(file, data, 0o644); err != nil {
		t.Fatal(err)
	}
	loop := attach(t, ctx, file, true)
	// Two linear targets swapping the halves of the file.
	half := uint64(len(data) / 2 / dm.SectorSize)
	path := create(t, ctx, "itest-linear", true,
		dm.LinearTarget{Start: 0, Length: half, Device: loop.Path, Offset: half},
		dm.LinearTarget{Start: half, Length: half, Device: loop.Path, Offset: 0})
	got, err := readAll(path)
	if err != nil {
		t.Fatal(err)
	}
	h := len(data) / 2
	if !bytes.Equal(got, append(slices.Clone(data[h:]), data[:h]...)) {
		t.Error("linear mapping did not swap the halves")
	}
	table, err := dm.Table(ctx, "itest-linear")
	if err != nil {
		t.Fatal(err)
	}
	if len(table) != 2 || !strings.HasSuffix(table[1].Params, " 0") || table[1].Start != half {
		t.Errorf("table %+v", table)
	}
}

func TestErrors(t *testing.T) {
	ctx := needDM(t)
	zero := dm.TableLine{Length: 8, Type: "error"}
	create(t, ctx, "itest-dup", true, zero)

	if _, err := dm.Create(ctx, "itest-dup", "", true, zero); !errors.Is(err, dm.ErrExist) {
		t.Errorf("second Create of the same name: %v, want ErrExist", err)
	}
	if err := dm.Remove(ctx, "itest-never-created"); !errors.Is(err, dm.ErrNotFound) {
		t.Errorf("Remove of an unknown device: %v, want ErrNotFound", err)
	}
	if _, err := dm.Status(ctx, "itest-never-created"); !errors.Is(err, dm.ErrNotFound) {
		t.Errorf("Status of an unknown device: %v, want ErrNotFound", err)
	}

	// A table the kernel rejects leaves nothing behind.
	_, err := dm.Create(ctx, "itest-badtable", "", true, dm.LinearTarget{Length: 8, Device: "/dev/does-not-exist"})
	if err == nil {
		t.Fatal("Create with a missing device succeeded")
	}
	t.Logf("rejected table: %v", err)
	if _, err := dm.DeviceInfo(ctx, "itest-badtable"); !errors.Is(err, dm.ErrNotFound) {
		t.Errorf("failed Create left the device behind: %v", err)
	}
	if _, err := os.Lstat("/dev/mapper/itest-badtable"); err == nil {
		t.Error("failed Create left a /dev/mapper node")
	}
}

// TestRemoveBusy: Remove waits while the device is open and gives up when
// its context ends.
func TestRemoveBusy(t *testing.T) {
	ctx := needDM(t)
	path := create(t, ctx, "itest-busy", true, dm.TableLine{Length: 8, Type: "error"})
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if err := dm.Remove(short, "itest-busy"); !errors.Is(err, unix.EBUSY) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Remove of an open device: %v, want EBUSY and the deadline", err)
	}
	done := make(chan error, 1)
	go func() { done <- dm.Remove(ctx, "itest-busy") }()
	time.Sleep(100 * time.Millisecond)
	f.Close()
	if err := <-done; err != nil {
		t.Errorf("Remove once closed: %v", err)
	}
}

// TestStaleNode: a block node left at /dev/mapper/NAME for another device
// is replaced, never returned.
func TestStaleNode(t *testing.T) {
	ctx := needDM(t)
	const name = "itest-stale"
	stale := filepath.Join(dm.MapperDir, name)
	if err := unix.Mknod(stale, unix.S_IFBLK|0o600, int(unix.Mkdev(7, 200))); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(stale) })
	path := create(t, ctx, name, true, dm.TableLine{Length: 8, Type: "error"})
	info, err := dm.DeviceInfo(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	if unix.Major(st.Rdev) != info.Dev.Major() || unix.Minor(st.Rdev) != info.Dev.Minor() {
		t.Errorf("%s is %d:%d, want the new device %s", path, unix.Major(st.Rdev), unix.Minor(st.Rdev), info.Dev)
	}
}
