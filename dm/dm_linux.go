//go:build linux

package dm

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ControlPath is the device-mapper control node.
const ControlPath = "/dev/mapper/control"

// MapperDir holds the /dev/mapper/NAME nodes.
const MapperDir = "/dev/mapper"

// ErrNotFound reports that no mapped device has the given name (the kernel
// answers ENXIO).
var ErrNotFound = errors.New("no such mapped device")

// ErrExist reports that a mapped device with the given name or UUID already
// exists (the kernel answers EBUSY to DM_DEV_CREATE).
var ErrExist = errors.New("mapped device already exists")

// Error is a failed device-mapper operation.
type Error struct {
	Op   string // "create", "load", "resume", "remove", "status", ...
	Name string // mapped device name, "" for DM_VERSION and DM_LIST_DEVICES
	Err  error  // usually a unix.Errno
}

func (e *Error) Error() string {
	s := "dm: " + e.Op
	if e.Name != "" {
		s += " " + e.Name
	}
	s += ": " + e.Err.Error()
	if e.Op == "load" && errors.Is(e.Err, unix.EINVAL) {
		s += " (the kernel log says which parameter it rejected)"
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrNotFound) and errors.Is(err, ErrExist) work.
func (e *Error) Is(target error) bool {
	switch target {
	case ErrNotFound:
		return errors.Is(e.Err, unix.ENXIO)
	case ErrExist:
		return e.Op == "create" && errors.Is(e.Err, unix.EBUSY)
	}
	return false
}

// Info describes a mapped device (DM_DEV_STATUS).
type Info struct {
	Name          string
	UUID          string
	Dev           Dev
	OpenCount     int
	TargetCount   int
	EventNr       uint32
	ReadOnly      bool
	Suspended     bool
	ActiveTable   bool // a table is live
	InactiveTable bool // a table is loaded but not yet resumed
}

// control is an open /dev/mapper/control.
type control struct{ f *os.File }

func openControl() (*control, error) {
	f, err := os.OpenFile(ControlPath, os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("dm: open control device (is dm-mod loaded?): %w", err)
	}
	return &control{f: f}, nil
}

func (c *control) Close() error { return c.f.Close() }

// do issues one ioctl with h and data in a buffer of at least size bytes and
// returns the reply buffer. Crypt tables set secure, which makes the kernel
// wipe its copy; we wipe ours.
func (c *control) do(op string, cmd uint, h header, data []byte, size int, secure bool) ([]byte, error) {
	h.Version = abiVersion
	if secure {
		h.Flags |= flagSecureData
	}
	buf, err := h.marshal(data, size)
	if err != nil {
		return nil, &Error{Op: op, Name: h.Name, Err: err}
	}
	if secure {
		defer clear(buf)
	}
	rc, err := c.f.SyscallConn()
	if err != nil {
		return nil, &Error{Op: op, Name: h.Name, Err: err}
	}
	var errno unix.Errno
	if err := rc.Control(func(fd uintptr) {
		for {
			_, _, errno = unix.Syscall(unix.SYS_IOCTL, fd, uintptr(ioctlRequest(cmd)), uintptr(unsafe.Pointer(&buf[0])))
			if errno != unix.EINTR {
				return
			}
		}
	}); err != nil {
		return nil, &Error{Op: op, Name: h.Name, Err: err}
	}
	if errno != 0 {
		return nil, &Error{Op: op, Name: h.Name, Err: errno}
	}
	if secure {
		out := make([]byte, headerSize)
		copy(out, buf)
		return out, nil
	}
	return buf, nil
}

// doGrow repeats a query with a larger buffer while the kernel reports that
// its answer did not fit.
func (c *control) doGrow(ctx context.Context, op string, cmd uint, h header) (header, []byte, error) {
	for size := 16 << 10; ; size *= 2 {
		if err := ctx.Err(); err != nil {
			return header{}, nil, &Error{Op: op, Name: h.Name, Err: err}
		}
		buf, err := c.do(op, cmd, h, nil, size, false)
		if err != nil {
			return header{}, nil, err
		}
		rh, err := parseHeader(buf)
		if err != nil {
			return header{}, nil, &Error{Op: op, Name: h.Name, Err: err}
		}
		if rh.Flags&flagBufferFull == 0 {
			if rh.DataStart < headerSize || int(rh.DataStart) > len(buf) {
				return header{}, nil, &Error{Op: op, Name: h.Name, Err: fmt.Errorf("%w: data start %d", errMalformed, rh.DataStart)}
			}
			end := min(int(rh.DataSize), len(buf))
			return rh, buf[rh.DataStart:max(end, int(rh.DataStart))], nil
		}
		if size >= 64<<20 {
			return header{}, nil, &Error{Op: op, Name: h.Name, Err: fmt.Errorf("reply does not fit in %d bytes", size)}
		}
	}
}

func checkName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsRune(name, '/') || len(name) >= nameLen {
		return fmt.Errorf("dm: invalid device name %q (1 to %d bytes, no '/')", name, nameLen-1)
	}
	return nil
}

// Version returns the kernel's device-mapper ioctl interface version.
func Version(ctx context.Context) ([3]uint32, error) {
	c, err := openControl()
	if err != nil {
		return [3]uint32{}, err
	}
	defer c.Close()
	buf, err := c.do("version", cmdVersion, header{}, nil, 0, false)
	if err != nil {
		return [3]uint32{}, err
	}
	h, err := parseHeader(buf)
	if err != nil {
		return [3]uint32{}, &Error{Op: "version", Err: err}
	}
	return h.Version, nil
}

// Create makes mapped device name with the given UUID (may be empty), loads
// targets as its table, read-only if readOnly, and resumes it. It returns the
// path of a block node for the device, /dev/mapper/NAME, creating that node
// itself when there is no udev. On failure nothing is left behind.
func Create(ctx context.Context, name, uuid string, readOnly bool, targets ...Target) (devPath string, err error) {
	if err := checkName(name); err != nil {
		return "", err
	}
	lines, err := renderTable(targets)
	if err != nil {
		return "", fmt.Errorf("dm: create %s: %w", name, err)
	}
	data, err := marshalTargets(lines)
	if err != nil {
		return "", fmt.Errorf("dm: create %s: %w", name, err)
	}
	secure := false
	for _, l := range lines {
		secure = secure || l.Type == "crypt"
	}
	defer clear(data)
	if err := ctx.Err(); err != nil {
		return "", &Error{Op: "create", Name: name, Err: err}
	}

	c, err := openControl()
	if err != nil {
		return "", err
	}
	defer c.Close()

	var flags uint32
	if readOnly {
		flags |= flagReadOnly
	}
	buf, err := c.do("create", cmdDevCreate, header{Name: name, UUID: uuid, Flags: flags}, nil, 0, false)
	if err != nil {
		return "", err
	}
	created, err := parseHeader(buf)
	if err != nil {
		return "", &Error{Op: "create", Name: name, Err: err}
	}
	defer func() {
		if err != nil {
			c.do("remove", cmdDevRemove, header{Name: name}, nil, 0, false) //nolint:errcheck // best-effort cleanup; the first error is the one to report
		}
	}()

	if _, err := c.do("load", cmdTableLoad, header{Name: name, Flags: flags, TargetCount: uint32(len(lines))}, data, 0, secure); err != nil {
		return "", err
	}
	if err := ctx.Err(); err != nil {
		return "", &Error{Op: "create", Name: name, Err: err}
	}
	// DM_DEV_SUSPEND without DM_SUSPEND_FLAG resumes: the loaded table goes live.
	if _, err := c.do("resume", cmdDevSuspend, header{Name: name}, nil, 0, false); err != nil {
		return "", err
	}
	path, err := ensureNode(name, Dev(created.Dev))
	if err != nil {
		return "", &Error{Op: "create", Name: name, Err: err}
	}
	return path, nil
}

// ensureNode makes /dev/mapper/NAME a block node for dev. A symlink there
// is udev's and is left alone; a block node for another device (left by a
// device removed without its node, e.g. after a crash) is replaced, so the
// returned path never names the wrong device.
func ensureNode(name string, dev Dev) (string, error) {
	path := filepath.Join(MapperDir, name)
	var st unix.Stat_t
	switch err := unix.Lstat(path, &st); {
	case err == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK:
		return path, nil
	case err == nil && st.Mode&unix.S_IFMT == unix.S_IFBLK:
		if unix.Major(st.Rdev) == dev.Major() && unix.Minor(st.Rdev) == dev.Minor() {
			return path, nil
		}
		if err := os.Remove(path); err != nil {
			return "", fmt.Errorf("replace stale %s: %w", path, err)
		}
	case err == nil:
		return "", fmt.Errorf("%s exists and is not a block device or symlink", path)
	case !errors.Is(err, unix.ENOENT):
		return "", fmt.Errorf("stat %s: %w", path, err)
	}
	if err := os.MkdirAll(MapperDir, 0o755); err != nil {
		return "", err
	}
	err := unix.Mknod(path, unix.S_IFBLK|0o600, int(unix.Mkdev(dev.Major(), dev.Minor())))
	if err != nil && !errors.Is(err, unix.EEXIST) {
		return "", fmt.Errorf("mknod %s (%s): %w", path, dev, err)
	}
	return path, nil
}

// Remove deletes mapped device name and the /dev/mapper/NAME block node
// Create made for it. While the device is still open (EBUSY, e.g. a
// filesystem is being unmounted or a reader has not closed yet) it retries
// until ctx is done.
func Remove(ctx context.Context, name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	c, err := openControl()
	if err != nil {
		return err
	}
	defer c.Close()
	info, err := c.info(name)
	if err != nil {
		return err
	}
	for delay := 10 * time.Millisecond; ; delay = min(2*delay, 500*time.Millisecond) {
		_, err = c.do("remove", cmdDevRemove, header{Name: name}, nil, 0, false)
		if !errors.Is(err, unix.EBUSY) {
			break
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w (gave up: %w)", err, ctx.Err())
		case <-t.C:
		}
	}
	if err != nil {
		return err
	}
	path := filepath.Join(MapperDir, name)
	var st unix.Stat_t
	if unix.Lstat(path, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFBLK &&
		unix.Major(st.Rdev) == info.Dev.Major() && unix.Minor(st.Rdev) == info.Dev.Minor() {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return &Error{Op: "remove", Name: name, Err: err}
		}
	}
	return nil
}

func (c *control) info(name string) (Info, error) {
	buf, err := c.do("status", cmdDevStatus, header{Name: name}, nil, 0, false)
	if err != nil {
		return Info{}, err
	}
	h, err := parseHeader(buf)
	if err != nil {
		return Info{}, &Error{Op: "status", Name: name, Err: err}
	}
	return Info{
		Name:          h.Name,
		UUID:          h.UUID,
		Dev:           Dev(h.Dev),
		OpenCount:     int(h.OpenCount),
		TargetCount:   int(h.TargetCount),
		EventNr:       h.EventNr,
		ReadOnly:      h.Flags&flagReadOnly != 0,
		Suspended:     h.Flags&flagSuspend != 0,
		ActiveTable:   h.Flags&flagActivePresent != 0,
		InactiveTable: h.Flags&flagInactive != 0,
	}, nil
}

// DeviceInfo returns the state of mapped device name (DM_DEV_STATUS).
func DeviceInfo(ctx context.Context, name string) (Info, error) {
	if err := checkName(name); err != nil {
		return Info{}, err
	}
	if err := ctx.Err(); err != nil {
		return Info{}, &Error{Op: "status", Name: name, Err: err}
	}
	c, err := openControl()
	if err != nil {
		return Info{}, err
	}
	defer c.Close()
	return c.info(name)
}

// Status returns each target's status text (DM_TABLE_STATUS), in
// TableLine.Params: for verity "V" (verified so far) or "C" (corruption
// seen); for crypt and linear, nothing.
func Status(ctx context.Context, name string) ([]TableLine, error) {
	return tableStatus(ctx, "status", name, 0)
}

// Table returns the live table of mapped device name as the kernel holds it
// (DM_TABLE_STATUS with DM_STATUS_TABLE_FLAG). Devices appear as
// "major:minor"; crypt keys appear in the clear.
func Table(ctx context.Context, name string) ([]TableLine, error) {
	return tableStatus(ctx, "table", name, flagStatusTable)
}

func tableStatus(ctx context.Context, op, name string, flags uint32) ([]TableLine, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	c, err := openControl()
	if err != nil {
		return nil, err
	}
	defer c.Close()
	h, data, err := c.doGrow(ctx, op, cmdTableStatus, header{Name: name, Flags: flags})
	if err != nil {
		return nil, err
	}
	lines, err := parseTargets(data, h.TargetCount)
	if err != nil {
		return nil, &Error{Op: op, Name: name, Err: err}
	}
	return lines, nil
}

// List returns every mapped device (DM_LIST_DEVICES).
func List(ctx context.Context) ([]Device, error) {
	c, err := openControl()
	if err != nil {
		return nil, err
	}
	defer c.Close()
	_, data, err := c.doGrow(ctx, "list", cmdListDevices, header{})
	if err != nil {
		return nil, err
	}
	devs, err := parseNameList(data)
	if err != nil {
		return nil, &Error{Op: "list", Err: err}
	}
	return devs, nil
}
