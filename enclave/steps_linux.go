//go:build linux

package enclave

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/mdlayher/vsock"
	"golang.org/x/sys/unix"

	"github.com/enclave-storage/enclave-storage/crypt"
	"github.com/enclave-storage/enclave-storage/dm"
	"github.com/enclave-storage/enclave-storage/ext4"
	"github.com/enclave-storage/enclave-storage/keys"
	"github.com/enclave-storage/enclave-storage/nbdclient"
	"github.com/enclave-storage/enclave-storage/nbdkernel"
	"github.com/enclave-storage/enclave-storage/verity"
)

// Errors callers may branch on with errors.Is.
var (
	// ErrRootHashMismatch: the image served by the parent does not match
	// the pinned root hash (dm-verity refuses its blocks).
	ErrRootHashMismatch = errors.New("enclave: the image does not match the pinned dm-verity root hash")
	// ErrWrongKey: the run volume holds a LUKS header the key does not
	// open. The volume is left untouched.
	ErrWrongKey = errors.New("enclave: the key does not unlock the run volume (it holds a LUKS header and will not be reformatted)")
	// ErrForeignRun: the run volume is neither blank nor LUKS.
	ErrForeignRun = errors.New("enclave: the run volume holds data that is not LUKS; refusing to format it")
	// ErrNoFilesystem: the LUKS volume opened but holds no ext4 filesystem,
	// typically because the first launch stopped between formatting LUKS
	// and mkfs. Nothing is reformatted automatically.
	ErrNoFilesystem = errors.New("enclave: the run volume unlocked but holds no ext4 filesystem (interrupted first launch?); wipe the run image to start over")
)

// dialParent connects to nbd-parent.
func dialParent(ctx context.Context, p Parent) (net.Conn, error) {
	if p.Network == "vsock" {
		c, err := vsock.DialContext(ctx, p.CID, p.Port, nil)
		if err != nil {
			return nil, fmt.Errorf("enclave: dialing vsock %d:%d: %w", p.CID, p.Port, err)
		}
		return c, nil
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, p.Network, p.Address)
	if err != nil {
		return nil, fmt.Errorf("enclave: dialing %s %s: %w", p.Network, p.Address, err)
	}
	return c, nil
}

// Attached is an NBD export attached to a kernel device.
type Attached struct {
	Export *nbdclient.Export
	Index  uint32
	Path   string // /dev/nbdN

	// Queue holds the device's queue limits after AttachExport set them
	// (exportQueueLimits); QueueErr why some could not be set, a warning
	// for the caller to log: the device works, only slower.
	Queue    QueueLimits
	QueueErr error

	mu    sync.Mutex
	relay *nbdkernel.Relay // nil when the kernel holds the parent's socket itself
}

// setRelay records the relay now carrying the device's connection and
// closes the one it replaces.
func (a *Attached) setRelay(r *nbdkernel.Relay) {
	a.mu.Lock()
	old := a.relay
	a.relay = r
	a.mu.Unlock()
	if old != nil {
		old.Close()
	}
}

// handOver gives conn to the kernel with call. Kernels with the "nbd:
// restrict sockets to TCP and UDP" change refuse vsock sockets with
// EINVAL; then conn is bridged through an nbdkernel.Relay (a UNIX socket
// pair), which handOver returns and which then owns conn. With a nil relay
// the caller still owns conn and should close it.
func handOver(conn net.Conn, call func(fd int) error) (*nbdkernel.Relay, error) {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return nil, fmt.Errorf("enclave: %T has no file descriptor to hand to the kernel", conn)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("enclave: %w", err)
	}
	var callErr error
	if err := rc.Control(func(fd uintptr) {
		if callErr = unix.SetNonblock(int(fd), false); callErr == nil {
			callErr = call(int(fd))
		}
	}); err != nil {
		return nil, fmt.Errorf("enclave: %w", err)
	}
	if !errors.Is(callErr, unix.EINVAL) {
		return nil, callErr
	}
	// Restore non-blocking mode for the Go runtime before relaying.
	rc.Control(func(fd uintptr) { unix.SetNonblock(int(fd), true) })
	r, err := nbdkernel.NewRelay(conn)
	if err != nil {
		return nil, errors.Join(callErr, err)
	}
	err = call(r.KernelFD())
	r.CloseKernelEnd()
	if err != nil {
		r.Close()
		return nil, fmt.Errorf("enclave: through a UNIX socket relay: %w", err)
	}
	return r, nil
}

// negotiate dials the parent and runs the handshake for export.
func negotiate(ctx context.Context, p Parent, export string) (net.Conn, *nbdclient.Export, error) {
	conn, err := dialParent(ctx, p)
	if err != nil {
		return nil, nil, err
	}
	exp, err := nbdclient.Handshake(ctx, conn, export)
	if err != nil {
		conn.Close()
		return nil, nil, err
	}
	return conn, exp, nil
}

// kernelConfig is the nbdkernel configuration for an export.
func kernelConfig(cfg Config, exp *nbdclient.Export) (nbdkernel.Config, error) {
	bs := uint64(nbdkernel.DefaultBlockSize)
	if exp.Size%bs != 0 {
		bs = 512
	}
	if m := uint64(exp.BlockSize.Minimum); m > bs {
		return nbdkernel.Config{}, fmt.Errorf("enclave: export %q needs %d-byte blocks, more than the kernel client supports", exp.Name, m)
	}
	timeout, dead := time.Duration(cfg.Timeout), time.Duration(cfg.DeadConnTimeout)
	if timeout == 0 {
		timeout = nbdkernel.DefaultTimeout
	}
	if dead == 0 {
		dead = nbdkernel.DefaultDeadConnTimeout
	}
	return nbdkernel.Config{
		Index:           nbdkernel.AnyIndex,
		Size:            exp.Size,
		BlockSize:       bs,
		ServerFlags:     uint64(exp.Flags),
		Timeout:         timeout,
		DeadConnTimeout: dead,
		BackendID:       exp.Name,
	}, nil
}

// AttachExport dials the parent, negotiates export and attaches it to a
// free /dev/nbdN. A run volume (writable) must not be exported read-only.
func AttachExport(ctx context.Context, nl *nbdkernel.Conn, cfg Config, export string, writable bool, undo *Undo) (*Attached, error) {
	p, err := ParseParent(cfg.Parent)
	if err != nil {
		return nil, err
	}
	conn, exp, err := negotiate(ctx, p, export)
	if err != nil {
		return nil, err
	}
	if err := CheckExport(exp); err != nil {
		conn.Close()
		return nil, err
	}
	if writable && exp.ReadOnly() {
		conn.Close()
		return nil, fmt.Errorf("enclave: the parent exports %q read-only; the run volume must be writable", export)
	}
	kc, err := kernelConfig(cfg, exp)
	if err != nil {
		conn.Close()
		return nil, err
	}
	var idx uint32
	relay, err := handOver(conn, func(fd int) error {
		kc.Sockets = []int{fd}
		var err error
		idx, err = nl.Connect(ctx, kc)
		return err
	})
	if relay == nil {
		conn.Close() // the kernel keeps its own reference
	}
	if err != nil {
		return nil, err
	}
	a := &Attached{Export: exp, Index: idx, Path: nbdkernel.DevicePath(idx), relay: relay}
	undo.Push("stop relay for "+a.Path, func(context.Context) error {
		a.setRelay(nil)
		return nil
	})
	undo.Push("disconnect "+a.Path, func(ctx context.Context) error {
		return nl.Disconnect(ctx, idx)
	})
	if err := waitBlockDevice(ctx, a.Path, fmt.Sprintf("nbd%d", idx), int64(exp.Size)); err != nil {
		return nil, err
	}
	// Before any dm table goes on the device: dm copies max_sectors_kb
	// from it at load.
	a.Queue, a.QueueErr = TuneQueue(a.Path, exportQueueLimits(exp, writable))
	return a, nil
}

// waitBlockDevice waits until the kernel shows sysName with the expected
// size and makes sure node exists (creating it from /sys/block/NAME/dev
// when there is no devtmpfs).
func waitBlockDevice(ctx context.Context, node, sysName string, size int64) error {
	sys := filepath.Join("/sys/block", sysName)
	for {
		b, err := os.ReadFile(filepath.Join(sys, "size"))
		if err == nil {
			sectors, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
			if sectors*512 >= size-511 && sectors > 0 {
				break
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("enclave: waiting for %s to show size %d: %w", sys, size, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
	if _, err := os.Stat(node); err == nil {
		return nil
	}
	b, err := os.ReadFile(filepath.Join(sys, "dev"))
	if err != nil {
		return fmt.Errorf("enclave: %s missing and %w", node, err)
	}
	maj, min, ok := strings.Cut(strings.TrimSpace(string(b)), ":")
	ma, err1 := strconv.ParseUint(maj, 10, 32)
	mi, err2 := strconv.ParseUint(min, 10, 32)
	if !ok || err1 != nil || err2 != nil {
		return fmt.Errorf("enclave: %s/dev is %q", sys, b)
	}
	if err := unix.Mknod(node, unix.S_IFBLK|0o600, int(unix.Mkdev(uint32(ma), uint32(mi)))); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("enclave: creating %s: %w", node, err)
	}
	return nil
}

// OpenVerity maps dev through dm-verity with the pinned parameters and
// checks the root hash by reading the first data block: the kernel checks
// every read against the tree up to the pinned root, so a wrong image fails
// here with ErrRootHashMismatch instead of later inside the filesystem.
func OpenVerity(ctx context.Context, dev *Attached, p *verity.Params, undo *Undo) (string, error) {
	if need := p.HashDeviceSize; dev.Export.Size < need || dev.Export.Size < p.DataSize() {
		return "", fmt.Errorf("enclave: image export %q is %d bytes, the verity parameters need %d", dev.Export.Name, dev.Export.Size, max(need, p.DataSize()))
	}
	t := dm.VerityTarget{
		DataDevice:     dev.Path,
		HashDevice:     dev.Path,
		DataBlockSize:  p.DataBlockSize,
		HashBlockSize:  p.HashBlockSize,
		DataBlocks:     p.DataBlocks,
		HashStartBlock: p.HashStartBlock(),
		Algorithm:      p.Algorithm,
		RootHash:       p.RootHash,
		Salt:           p.Salt,
		OnCorruption:   dm.CorruptionEIO,
	}
	path, err := dm.Create(ctx, imageVolumeName, "", true, t)
	if err != nil {
		return "", fmt.Errorf("enclave: opening dm-verity over %s: %w", dev.Path, err)
	}
	undo.Push("remove dm "+imageVolumeName, func(ctx context.Context) error { return dm.Remove(ctx, imageVolumeName) })
	if err := readFirstBlock(path, int(p.DataBlockSize)); err != nil {
		if errors.Is(err, unix.EIO) {
			return "", fmt.Errorf("%w (root %x, reading %s: %v)", ErrRootHashMismatch, []byte(p.RootHash), path, err)
		}
		return "", fmt.Errorf("enclave: reading %s: %w", path, err)
	}
	return path, nil
}

// readFirstBlock reads block 0 of dev bypassing the page cache.
func readFirstBlock(dev string, size int) error {
	f, err := os.OpenFile(dev, os.O_RDONLY|unix.O_DIRECT, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	// O_DIRECT needs an aligned buffer: carve one out of a larger slice.
	buf := make([]byte, 2*size)
	off := 0
	if r := int(uintptrOf(buf) % uintptr(size)); r != 0 {
		off = size - r
	}
	_, err = f.ReadAt(buf[off:off+size], 0)
	return err
}

// Mount mounts dev (of fstype) at dir, creating dir, and pushes the
// unmount.
func Mount(dev, dir, fstype string, flags uintptr, data string, undo *Undo) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("enclave: %w", err)
	}
	if err := unix.Mount(dev, dir, fstype, flags, data); err != nil {
		return fmt.Errorf("enclave: mounting %s (%s) at %s: %w", dev, fstype, dir, err)
	}
	undo.Push("unmount "+dir, func(ctx context.Context) error {
		unix.Sync()
		return unmountRetry(ctx, dir)
	})
	return nil
}

// unmountRetry unmounts dir, retrying on EBUSY until ctx is done.
func unmountRetry(ctx context.Context, dir string) error {
	for {
		err := unix.Unmount(dir, 0)
		if err == nil {
			return nil
		}
		if !errors.Is(err, unix.EBUSY) || ctx.Err() != nil {
			return fmt.Errorf("unmounting %s: %w", dir, err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// OpenRun unlocks (or, when blank or ephemeral, formats) the LUKS2 volume
// on dev, maps it with dm-crypt and returns the mapped device and whether
// it is new (needs Mkfs).
// opts tunes crypt.Format (nil: its defaults; see formatOptions).
func OpenRun(ctx context.Context, dev *Attached, kp keys.Provider, ephemeral bool, opts *crypt.FormatOptions, undo *Undo, log *slog.Logger) (path string, fresh bool, err error) {
	f, err := os.OpenFile(dev.Path, os.O_RDWR, 0)
	if err != nil {
		return "", false, fmt.Errorf("enclave: opening run device: %w", err)
	}
	defer f.Close()
	size := int64(dev.Export.Size)
	state, err := ClassifyRun(f, size)
	if err != nil {
		return "", false, err
	}
	log.Info("run volume", "device", dev.Path, "state", state.String(), "ephemeral", ephemeral)
	// A sealed key (kms:) needs the volume: unlockSealed gets it.
	if ephemeral || state == RunBlank {
		if err := checkRoom(size, opts); err != nil {
			return "", false, err
		}
	}
	sealer, sealed := kp.(keys.Sealer)
	var key []byte
	if !sealed {
		key, err = kp.Key(ctx, runVolumeName)
		if err != nil {
			return "", false, fmt.Errorf("enclave: run volume key: %w", err)
		}
		defer clear(key)
	}

	var vol *crypt.Volume
	switch {
	case state == RunTampered && !ephemeral:
		return "", false, fmt.Errorf("%w: %s", ErrTamperedRun, dev.Path)
	case sealed:
		if vol, fresh, err = unlockSealed(ctx, f, dev.Export.Name, sealer, state, opts, log); err != nil {
			return "", false, err
		}
	case ephemeral || state == RunBlank:
		vol, err = crypt.Format(ctx, f, key, formatOptions(opts, key))
		if err != nil {
			return "", false, fmt.Errorf("enclave: formatting LUKS2 on %s: %w", dev.Path, err)
		}
		fresh = true
	case state == RunLUKS:
		// The parent wrote this header: refuse what we would not have
		// written before any KDF runs (crypt.ErrPolicy).
		vol, err = crypt.OpenWithPolicy(ctx, f, key, crypt.EnclavePolicy())
		if errors.Is(err, crypt.ErrWrongKey) {
			return "", false, fmt.Errorf("%w: %s", ErrWrongKey, dev.Path)
		}
		if err != nil {
			return "", false, fmt.Errorf("enclave: unlocking %s: %w", dev.Path, err)
		}
	default:
		return "", false, fmt.Errorf("%w: %s", ErrForeignRun, dev.Path)
	}
	defer vol.Zero()
	if fresh {
		// However the key came, a new volume gets its data area's sample
		// blocks stamped, so a later header wipe reads as tampering
		// (ClassifyRun), and the new header is made durable.
		err := StampRun(f, size, vol.Offset)
		if err == nil {
			err = f.Sync()
		}
		if err != nil {
			return "", false, fmt.Errorf("enclave: formatting LUKS2 on %s: %w", dev.Path, err)
		}
	}
	sectors, err := cryptSectors(size, vol.Offset, vol.Size, vol.SectorSize)
	if err != nil {
		return "", false, err
	}
	t := runCryptTarget(vol, dev.Path, sectors)
	if err := f.Close(); err != nil {
		return "", false, fmt.Errorf("enclave: closing %s: %w", dev.Path, err)
	}
	path, err = dm.Create(ctx, runVolumeName, "", false, t)
	if err != nil {
		return "", false, fmt.Errorf("enclave: opening dm-crypt over %s: %w", dev.Path, err)
	}
	undo.Push("remove dm "+runVolumeName, func(ctx context.Context) error { return dm.Remove(ctx, runVolumeName) })
	if !fresh {
		ok, err := hasExt4(path)
		if err != nil {
			return "", false, err
		}
		if !ok {
			return "", false, fmt.Errorf("%w: %s", ErrNoFilesystem, dev.Path)
		}
	}
	return path, fresh, nil
}

// hasExt4 looks for the ext2/3/4 superblock magic (0xEF53 at byte 1080).
func hasExt4(dev string) (bool, error) {
	f, err := os.Open(dev)
	if err != nil {
		return false, fmt.Errorf("enclave: %w", err)
	}
	defer f.Close()
	var m [2]byte
	if _, err := f.ReadAt(m[:], 1080); err != nil {
		return false, fmt.Errorf("enclave: reading superblock of %s: %w", dev, err)
	}
	return binary.LittleEndian.Uint16(m[:]) == 0xEF53, nil
}

// Mkfs creates the run volume's ext4 filesystem on dev, the dm-crypt
// mapping, in Go (package ext4): the enclave ramdisk carries no mkfs.ext4.
// The filesystem fills the device, which is synced before Mkfs returns.
// The journal is kept: after an unclean stop ext4 replays it on the next
// mount, which is our whole fsck policy (no fsck.ext4 in the enclave).
func Mkfs(ctx context.Context, dev string) (ext4.Stats, error) {
	f, err := os.OpenFile(dev, os.O_RDWR, 0)
	if err != nil {
		return ext4.Stats{}, fmt.Errorf("enclave: mkfs: %w", err)
	}
	defer f.Close()
	size, err := f.Seek(0, io.SeekEnd) // a block device's size
	if err != nil {
		return ext4.Stats{}, fmt.Errorf("enclave: mkfs: size of %s: %w", dev, err)
	}
	st, err := ext4.Format(ctx, f, size, &ext4.Options{Label: runVolumeName})
	if err == nil {
		err = f.Sync()
	}
	if err == nil {
		err = f.Close()
	}
	if err != nil {
		return st, fmt.Errorf("enclave: mkfs %s: %w", dev, err)
	}
	return st, nil
}
