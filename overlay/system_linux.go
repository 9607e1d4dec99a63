//go:build linux

package overlay

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// A SystemMount is one of the mounts BindSystem makes inside the root.
type SystemMount struct {
	Target string // path inside the root
	// Bind, when set, is the agent path bound (recursively) at Target;
	// otherwise a new FSType filesystem is mounted with Flags and Data.
	Bind   string
	FSType string
	Flags  uintptr
	Data   string
}

// SystemMounts is what BindSystem gives the application, in order: what a
// container runtime gives a container and the Nitro reference init
// (aws-nitro-enclaves-sdk-bootstrap init/init.c) gives the application.
// /dev, /proc and /sys are the agent's, bound recursively, so /dev/pts,
// /dev/shm, the /dev/fd and /dev/std* links, the cgroup hierarchies and
// /dev/nsm come along; /run and /tmp are fresh tmpfs instances of the
// application's own, with the reference's flags.
func SystemMounts() []SystemMount {
	return []SystemMount{
		{Target: "/dev", Bind: "/dev"},
		{Target: "/proc", Bind: "/proc"},
		{Target: "/sys", Bind: "/sys"},
		{Target: "/run", FSType: "tmpfs", Flags: unix.MS_NODEV | unix.MS_NOSUID | unix.MS_NOEXEC, Data: "mode=0755"},
		{Target: "/tmp", FSType: "tmpfs", Flags: unix.MS_NODEV | unix.MS_NOSUID | unix.MS_NOEXEC, Data: "mode=1777"},
	}
}

// mountSystem makes m inside the root.
func (r *Root) mountSystem(m SystemMount) error {
	if m.Bind != "" {
		return r.Bind(m.Bind, m.Target)
	}
	dst, err := r.mkdirInRoot(m.Target)
	if err != nil {
		return err
	}
	if err := unix.Mount(m.FSType, dst, m.FSType, m.Flags, m.Data); err != nil {
		return fmt.Errorf("overlay: mounting %s at %s: %w", m.FSType, dst, err)
	}
	r.mounts = append(r.mounts, dst)
	return nil
}

// IsMountPoint reports whether p is the root of a mount (its mount ID
// differs from its parent directory's).
func IsMountPoint(p string) bool { return isMountPoint(p) }
