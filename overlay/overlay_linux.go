//go:build linux

package overlay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Mount mounts an overlay of o at target with the extra mount flags
// (unix.MS_*), for example unix.MS_NODEV.
func Mount(target string, o Options, flags uintptr) error {
	data, err := o.Data()
	if err != nil {
		return err
	}
	if err := unix.Mount("overlay", target, "overlay", flags, data); err != nil {
		return fmt.Errorf("overlay: mounting overlay (%s) at %s: %w", data, target, err)
	}
	return nil
}

// Unmount unmounts target, retrying while the kernel answers EBUSY (a
// process that just exited may still hold it for a moment) until ctx is
// done; then it detaches it lazily (MNT_DETACH) and reports the EBUSY.
func Unmount(ctx context.Context, target string) error {
	for {
		err := unix.Unmount(target, 0)
		if err == nil || errors.Is(err, unix.EINVAL) && !isMountPoint(target) {
			return nil
		}
		if !errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("overlay: unmounting %s: %w", target, err)
		}
		select {
		case <-ctx.Done():
			derr := unix.Unmount(target, unix.MNT_DETACH)
			return errors.Join(fmt.Errorf("overlay: unmounting %s: %w (detached lazily)", target, err), derr)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// isMountPoint reports whether p is the root of a mount, comparing the
// mount IDs of p and its parent (statx STATX_MNT_ID).
func isMountPoint(p string) bool {
	var a, b unix.Statx_t
	if unix.Statx(unix.AT_FDCWD, p, unix.AT_SYMLINK_NOFOLLOW, unix.STATX_MNT_ID, &a) != nil ||
		unix.Statx(unix.AT_FDCWD, filepath.Dir(p), 0, unix.STATX_MNT_ID, &b) != nil {
		return false
	}
	return a.Mnt_id != b.Mnt_id
}

// A Root is a mounted overlay prepared as an application's root directory.
// Close undoes its mounts in reverse order.
type Root struct {
	dir    string
	mounts []string // mount points to unmount, in mount order
}

// NewRoot mounts the overlay o at dir (which must exist) and returns it as
// a Root. The overlay is mounted nodev: a device node shipped in the image
// (or made in the run volume) opens nothing, since an enclave has no
// device cgroup to stop a world-writable node of the run device or of
// memory; the real /dev is bound in by BindSystem. It stays suid-capable,
// as an ordinary root filesystem (imgbuild --drop-setuid strips the bits
// at build time instead).
func NewRoot(dir string, o Options) (*Root, error) {
	if err := Mount(dir, o, unix.MS_NODEV); err != nil {
		return nil, err
	}
	return &Root{dir: dir, mounts: []string{dir}}, nil
}

// Dir returns the root's directory as the agent sees it.
func (r *Root) Dir() string { return r.dir }

// BindSystem makes SystemMounts in the root: the agent's /dev, /proc and
// /sys bound recursively, so the application sees devices (including
// /dev/nsm for Nitro attestation, /dev/pts and /dev/shm), processes, sysfs
// and cgroups, and fresh tmpfs on /run and /tmp.
func (r *Root) BindSystem() error {
	for _, m := range SystemMounts() {
		if err := r.mountSystem(m); err != nil {
			return err
		}
	}
	return nil
}

// Bind recursively bind-mounts src (an agent path) at rel inside the root,
// creating the directory in the root if the image lacks it. rel must not
// resolve through a symlink in the image.
func (r *Root) Bind(src, rel string) error {
	dst, err := r.mkdirInRoot(rel)
	if err != nil {
		return err
	}
	if err := unix.Mount(src, dst, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("overlay: binding %s at %s: %w", src, dst, err)
	}
	r.mounts = append(r.mounts, dst)
	return nil
}

// mkdirInRoot creates rel (and its parents) under the root, refusing any
// component that is a symlink: a hostile image could otherwise point /proc
// at an agent directory and have us mount over it.
func (r *Root) mkdirInRoot(rel string) (string, error) {
	clean := path.Clean("/" + rel)
	cur := r.dir
	for _, c := range strings.Split(strings.TrimPrefix(clean, "/"), "/") {
		if c == "" {
			continue
		}
		cur = filepath.Join(cur, c)
		fi, err := os.Lstat(cur)
		switch {
		case errors.Is(err, os.ErrNotExist):
			if err := os.Mkdir(cur, 0o755); err != nil {
				return "", fmt.Errorf("overlay: creating %s in the root: %w", cur, err)
			}
		case err != nil:
			return "", fmt.Errorf("overlay: %w", err)
		case fi.Mode()&os.ModeSymlink != 0:
			return "", fmt.Errorf("overlay: %s in the image is a symlink; refusing to mount over it", clean)
		case !fi.IsDir():
			return "", fmt.Errorf("overlay: %s in the image is not a directory", clean)
		}
	}
	return cur, nil
}

// Close unmounts the binds and the overlay in reverse order. Binds are
// recursive, so they are detached (MNT_DETACH) with their submounts; the
// overlay itself is unmounted normally, retrying on EBUSY until ctx is done.
// It reports every failure and can be called again after one.
func (r *Root) Close(ctx context.Context) error {
	var errs []error
	for len(r.mounts) > 0 {
		m := r.mounts[len(r.mounts)-1]
		var err error
		if len(r.mounts) == 1 {
			err = Unmount(ctx, m)
		} else if e := unix.Unmount(m, unix.MNT_DETACH); e != nil && !errors.Is(e, unix.EINVAL) {
			err = fmt.Errorf("overlay: detaching %s: %w", m, e)
		}
		if err != nil {
			errs = append(errs, err)
			if len(r.mounts) == 1 {
				break
			}
		}
		r.mounts = r.mounts[:len(r.mounts)-1]
	}
	return errors.Join(errs...)
}

// Process describes the application to start, as an OCI image config does.
type Process struct {
	// Args is the command line (Entrypoint followed by Cmd); Args[0] is
	// looked up in the root's PATH (from Env) when it has no slash.
	Args []string
	// Env is the environment, "KEY=value"; PATH=DefaultPath is added when
	// it has no PATH (Environ).
	Env []string
	// Dir is the working directory inside the root; "" means "/".
	Dir string
	// User is "uid", "uid:gid", "name" or "name:group", resolved against
	// the root's /etc/passwd and /etc/group; "" means root.
	User string
}

// DefaultPath is the PATH used when the image's environment has none, as
// container runtimes do.
const DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Command returns the application as an unstarted command chrooted into
// the root. Cancelling ctx sends it SIGTERM, and SIGKILL after grace.
func (r *Root) Command(ctx context.Context, p Process, grace time.Duration) (*exec.Cmd, error) {
	if len(p.Args) == 0 || p.Args[0] == "" {
		return nil, errors.New("overlay: the image has no entrypoint or command")
	}
	exe, err := r.LookPath(p.Args[0], envPath(p.Env))
	if err != nil {
		return nil, err
	}
	cred, err := r.credential(p.User)
	if err != nil {
		return nil, err
	}
	dir := p.Dir
	if dir == "" {
		dir = "/"
	}
	cmd := exec.CommandContext(ctx, exe)
	cmd.Args = append([]string{}, p.Args...)
	cmd.Env = Environ(p.Env)
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: r.dir, Credential: cred, Setsid: true}
	cmd.Cancel = func() error { return cmd.Process.Signal(unix.SIGTERM) }
	cmd.WaitDelay = grace
	return cmd, nil
}

func envPath(env []string) string {
	for i := len(env) - 1; i >= 0; i-- {
		if v, ok := strings.CutPrefix(env[i], "PATH="); ok {
			return v
		}
	}
	return DefaultPath
}

// LookPath finds an executable named file inside the root, as the shell
// would after chroot: names with a slash are taken as they are (relative to
// /), others are searched in pathList. It returns the in-root path.
func (r *Root) LookPath(file, pathList string) (string, error) {
	if strings.Contains(file, "/") {
		p := path.Clean("/" + file)
		if err := r.executable(p); err != nil {
			return "", fmt.Errorf("overlay: entrypoint %s: %w", file, err)
		}
		return p, nil
	}
	for _, d := range filepath.SplitList(pathList) {
		if d == "" || !strings.HasPrefix(d, "/") {
			continue
		}
		p := path.Join(d, file)
		if r.executable(p) == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("overlay: entrypoint %q not found in the image's PATH %s", file, pathList)
}

// executable checks that p, resolved inside the root, is an executable
// regular file.
func (r *Root) executable(p string) error {
	fd, err := r.openInRoot(p, unix.O_PATH)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG || st.Mode&0o111 == 0 {
		return fmt.Errorf("%s is not an executable file", p)
	}
	return nil
}

// openInRoot opens p with every symlink resolved inside the root.
func (r *Root) openInRoot(p string, flags int) (int, error) {
	rootfd, err := unix.Open(r.dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("opening root %s: %w", r.dir, err)
	}
	defer unix.Close(rootfd)
	fd, err := unix.Openat2(rootfd, strings.TrimPrefix(p, "/"), &unix.OpenHow{
		Flags:   uint64(flags | unix.O_CLOEXEC),
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	})
	if err != nil {
		return -1, fmt.Errorf("opening %s in %s: %w", p, r.dir, err)
	}
	return fd, nil
}

// readInRoot reads a small file inside the root.
func (r *Root) readInRoot(p string) ([]byte, error) {
	fd, err := r.openInRoot(p, unix.O_RDONLY)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), p)
	defer f.Close()
	const max = 1 << 20
	b := make([]byte, max+1)
	n, err := f.ReadAt(b, 0)
	if n > max {
		return nil, fmt.Errorf("%s is larger than %d bytes", p, max)
	}
	if err != nil && n == 0 && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return b[:n], nil
}

// credential resolves an image's User field.
func (r *Root) credential(user string) (*syscall.Credential, error) {
	if user == "" {
		return nil, nil
	}
	name, group, hasGroup := strings.Cut(user, ":")
	uid, gid, err := r.lookupUser(name)
	if err != nil {
		return nil, fmt.Errorf("overlay: user %q: %w", user, err)
	}
	if hasGroup {
		if gid, err = r.lookupGroup(group); err != nil {
			return nil, fmt.Errorf("overlay: user %q: %w", user, err)
		}
	}
	return &syscall.Credential{Uid: uid, Gid: gid, Groups: []uint32{}}, nil
}

// lookupUser returns the uid and primary gid of name, numeric or from the
// root's /etc/passwd.
func (r *Root) lookupUser(name string) (uint32, uint32, error) {
	passwd, _ := r.readInRoot("/etc/passwd")
	return LookupUser(passwd, name)
}

// lookupGroup returns the gid of group, numeric or from /etc/group.
func (r *Root) lookupGroup(group string) (uint32, error) {
	groups, _ := r.readInRoot("/etc/group")
	return LookupGroup(groups, group)
}
