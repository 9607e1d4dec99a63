//go:build linux

package itest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// Loop is an attached loop device. It detaches itself (LO_FLAGS_AUTOCLEAR)
// once Close has run and nothing else holds it open.
type Loop struct {
	Path string // /dev/loopN
	Dev  uint64 // device number
	f    *os.File
}

// AttachLoop attaches file to a free loop device, read-only if readOnly.
// It creates the /dev/loopN node when /dev lacks it (containers).
func AttachLoop(ctx context.Context, file string, readOnly bool) (*Loop, error) {
	flag := os.O_RDWR
	lflags := uint32(unix.LO_FLAGS_AUTOCLEAR)
	if readOnly {
		flag = os.O_RDONLY
		lflags |= unix.LO_FLAGS_READ_ONLY
	}
	backing, err := os.OpenFile(file, flag|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("loop: %w", err)
	}
	defer backing.Close()
	ctl, err := os.OpenFile("/dev/loop-control", os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("loop: %w", err)
	}
	defer ctl.Close()

	for {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("loop: attach %s: %w", file, err)
		}
		n, err := unix.IoctlRetInt(int(ctl.Fd()), unix.LOOP_CTL_GET_FREE)
		if err != nil {
			return nil, fmt.Errorf("loop: get free device: %w", err)
		}
		path := fmt.Sprintf("/dev/loop%d", n)
		dev := unix.Mkdev(7, uint32(n))
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			if err := unix.Mknod(path, unix.S_IFBLK|0o600, int(dev)); err != nil && !errors.Is(err, unix.EEXIST) {
				return nil, fmt.Errorf("loop: mknod %s: %w", path, err)
			}
		}
		f, err := os.OpenFile(path, flag|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("loop: %w", err)
		}
		cfg := unix.LoopConfig{Fd: uint32(backing.Fd())}
		cfg.Info.Flags = lflags
		copy(cfg.Info.File_name[:len(cfg.Info.File_name)-1], file)
		err = unix.IoctlLoopConfigure(int(f.Fd()), &cfg)
		if errors.Is(err, unix.EBUSY) {
			// Someone else took it between GET_FREE and CONFIGURE.
			f.Close()
			time.Sleep(10 * time.Millisecond)
			continue
		}
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("loop: configure %s over %s: %w", path, file, err)
		}
		return &Loop{Path: path, Dev: dev, f: f}, nil
	}
}

// DevString returns the device as "major:minor".
func (l *Loop) DevString() string {
	return fmt.Sprintf("%d:%d", unix.Major(l.Dev), unix.Minor(l.Dev))
}

// Close releases the loop device; the kernel detaches it once nothing else
// (a device-mapper table, a mount) holds it.
func (l *Loop) Close() error {
	if err := l.f.Close(); err != nil {
		return fmt.Errorf("loop: close %s: %w", l.Path, err)
	}
	return nil
}
