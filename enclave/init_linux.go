//go:build linux

package enclave

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/enclave-storage/enclave-storage/overlay"
)

// InitPath is the PATH the agent gives itself as PID 1 when the kernel
// passed none (it never does), the reference init's DEFAULT_PATH_ENV.
const InitPath = "/sbin:/usr/sbin:/bin:/usr/bin"

// InitMount is one mount InitSystem makes.
type InitMount struct {
	Source, Target, FSType string
	Flags                  uintptr
	Data                   string
}

// InitMounts is InitSystem's mount table, in order, with the Nitro
// reference init's sources, flags and data (aws-nitro-enclaves-sdk-bootstrap
// init/init.c: init_dev and the ops table): parents come before the mounts
// inside them.
func InitMounts() []InitMount {
	const nodev = unix.MS_NODEV | unix.MS_NOSUID | unix.MS_NOEXEC
	return []InitMount{
		{"dev", "/dev", "devtmpfs", unix.MS_NOSUID | unix.MS_NOEXEC, ""},
		{"proc", "/proc", "proc", nodev, ""},
		{"tmpfs", "/run", "tmpfs", nodev, "mode=0755"},
		{"tmpfs", "/tmp", "tmpfs", nodev, ""},
		{"shm", "/dev/shm", "tmpfs", nodev, ""},
		{"devpts", "/dev/pts", "devpts", unix.MS_NOSUID | unix.MS_NOEXEC, ""},
		{"sysfs", "/sys", "sysfs", nodev, ""},
		{"cgroup_root", "/sys/fs/cgroup", "tmpfs", nodev, "mode=0755"},
	}
}

// InitLinks are the symlinks InitSystem makes in /dev, link -> target.
func InitLinks() [][2]string {
	return [][2]string{
		{"/dev/fd", "/proc/self/fd"},
		{"/dev/stdin", "/proc/self/fd/0"},
		{"/dev/stdout", "/proc/self/fd/1"},
		{"/dev/stderr", "/proc/self/fd/2"},
	}
}

// InitSystem does what an init must before anything else, as the Nitro
// reference init does: InitMounts (skipping mount points already mounted,
// such as a devtmpfs the kernel mounted with devtmpfs.mount=1), the
// InitLinks, one cgroup v1 hierarchy per controller /proc/cgroups lists as
// enabled under /sys/fs/cgroup, stdin, stdout and stderr on /dev/console,
// and PATH=InitPath when PATH is unset.
func InitSystem(log *slog.Logger) error {
	for _, m := range InitMounts() {
		if err := os.MkdirAll(m.Target, 0o755); err != nil {
			return fmt.Errorf("enclave: %w", err)
		}
		if overlay.IsMountPoint(m.Target) {
			log.Info("already mounted", "dir", m.Target)
			continue
		}
		if err := unix.Mount(m.Source, m.Target, m.FSType, m.Flags, m.Data); err != nil {
			return fmt.Errorf("enclave: mounting %s at %s: %w", m.FSType, m.Target, err)
		}
	}
	for _, l := range InitLinks() {
		if err := os.Symlink(l[1], l[0]); err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("enclave: %w", err)
		}
	}
	if err := initConsole(); err != nil {
		return err
	}
	b, err := os.ReadFile("/proc/cgroups")
	if err != nil {
		return fmt.Errorf("enclave: %w", err)
	}
	ctrls, err := ParseCgroups(b)
	if err != nil {
		return err
	}
	for _, c := range ctrls {
		dir := filepath.Join("/sys/fs/cgroup", c)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("enclave: %w", err)
		}
		if overlay.IsMountPoint(dir) {
			continue
		}
		// The reference init dies here; nothing the agent or the
		// application needs depends on one controller, so a warning.
		if err := unix.Mount(c, dir, "cgroup", unix.MS_NODEV|unix.MS_NOSUID|unix.MS_NOEXEC, c); err != nil {
			log.Warn("cannot mount a cgroup hierarchy", "controller", c, "err", err)
		}
	}
	if _, ok := os.LookupEnv("PATH"); !ok {
		os.Setenv("PATH", InitPath)
	}
	log.Info("init system ready", "mounts", len(InitMounts()), "cgroup_controllers", strings.Join(ctrls, ","))
	return nil
}

// initConsole puts stdin, stdout and stderr on /dev/console, as the
// reference init's init_console does: the kernel opens the console for
// init only when the ramdisk has /dev/console.
func initConsole() error {
	fd, err := unix.Open("/dev/console", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("enclave: opening /dev/console: %w", err)
	}
	defer unix.Close(fd)
	for i := 0; i < 3; i++ {
		if err := unix.Dup3(fd, i, 0); err != nil {
			return fmt.Errorf("enclave: console on fd %d: %w", i, err)
		}
	}
	return nil
}

// ErrCgroups reports a /proc/cgroups that does not parse.
var ErrCgroups = errors.New("enclave: malformed /proc/cgroups")

// maxCgroupsFile bounds the /proc/cgroups ParseCgroups accepts.
const maxCgroupsFile = 64 << 10

// ParseCgroups returns the enabled controllers of a /proc/cgroups file
// (a header line, then "name hierarchy num_cgroups enabled" per line), in
// file order, as the reference init's init_cgroups reads it.
func ParseCgroups(b []byte) ([]string, error) {
	if len(b) > maxCgroupsFile {
		return nil, fmt.Errorf("%w: %d bytes", ErrCgroups, len(b))
	}
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	first := true
	for sc.Scan() {
		line := sc.Text()
		if first {
			first = false
			if strings.HasPrefix(line, "#") {
				continue
			}
		}
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if len(f) != 4 || len(f[0]) > 64 || strings.ContainsAny(f[0], "/.,=") {
			return nil, fmt.Errorf("%w: line %q", ErrCgroups, line)
		}
		var n [3]int
		for i, s := range f[1:] {
			v, err := strconv.Atoi(s)
			if err != nil {
				return nil, fmt.Errorf("%w: line %q: %w", ErrCgroups, line, err)
			}
			n[i] = v
		}
		if n[2] != 0 {
			out = append(out, f[0])
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCgroups, err)
	}
	return out, nil
}

// Reboot syncs and restarts the machine, which ends a Nitro enclave: the
// reference init ends with reboot(RB_AUTOBOOT) once the application has
// exited, and so does the agent as PID 1 (the kernel panics when init
// exits). Under QEMU, -no-reboot turns it into an exit.
func Reboot() error {
	unix.Sync()
	return unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART)
}
