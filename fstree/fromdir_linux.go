//go:build linux

package fstree

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// FromDir builds a tree from the directory dir on disk, with the
// ownership, modes, times, device numbers, xattrs and hard links found
// there (Lstat, not following symlinks). File content is referenced, not
// copied: each regular file becomes a FileRange over the file, so the files
// must stay unchanged while the tree is used. dir's own metadata becomes
// the root's. Nested mount points are not treated specially.
//
// It serves benchmarks, tests (reading back an extracted or mounted image)
// and building images from a prepared directory.
func FromDir(ctx context.Context, dir string) (*Tree, error) {
	t := New()
	links := make(map[[2]uint64]*Inode)
	root, err := inodeFromDisk(dir, links)
	if err != nil {
		return nil, err
	}
	if root.Type != TypeDir {
		return nil, fmt.Errorf("fstree: %s: %w", dir, ErrNotDir)
	}
	t.root = root
	if err := fromDir(ctx, t, dir, "", links); err != nil {
		return nil, err
	}
	return t, nil
}

func fromDir(ctx context.Context, t *Tree, dir, rel string, links map[[2]uint64]*Inode) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	f, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("fstree: %w", err)
	}
	names, err := f.Readdirnames(-1)
	f.Close()
	if err != nil {
		return fmt.Errorf("fstree: read directory %s: %w", dir, err)
	}
	sort.Strings(names)
	for _, name := range names {
		full := filepath.Join(dir, name)
		n, err := inodeFromDisk(full, links)
		if err != nil {
			return err
		}
		p := name
		if rel != "" {
			p = rel + "/" + name
		}
		if err := t.Insert(p, n); err != nil {
			return fmt.Errorf("fstree: %s: %w", full, err)
		}
		if n.Type == TypeDir {
			if err := fromDir(ctx, t, full, p, links); err != nil {
				return err
			}
		}
	}
	return nil
}

func inodeFromDisk(name string, links map[[2]uint64]*Inode) (*Inode, error) {
	var st unix.Stat_t
	if err := unix.Lstat(name, &st); err != nil {
		return nil, fmt.Errorf("fstree: lstat %s: %w", name, err)
	}
	key := [2]uint64{uint64(st.Dev), st.Ino}
	typ := TypeFromUnix(st.Mode)
	if typ != TypeDir && st.Nlink > 1 {
		if n := links[key]; n != nil {
			return n, nil
		}
	}
	n := &Inode{
		Type:    typ,
		Perm:    st.Mode & 0o7777,
		UID:     st.Uid,
		GID:     st.Gid,
		ModTime: time.Unix(st.Mtim.Unix()),
	}
	switch typ {
	case 0:
		return nil, fmt.Errorf("fstree: %s: unknown file type %#o", name, st.Mode&S_IFMT)
	case TypeRegular:
		if st.Size > 0 {
			n.Content = FileRange{Name: name, Length: st.Size}
		}
	case TypeSymlink:
		target, err := os.Readlink(name)
		if err != nil {
			return nil, fmt.Errorf("fstree: %w", err)
		}
		n.Target = target
	case TypeCharDevice, TypeBlockDevice:
		n.Major, n.Minor = unix.Major(st.Rdev), unix.Minor(st.Rdev)
	}
	x, err := readXattrs(name)
	if err != nil {
		return nil, err
	}
	n.Xattrs = x
	if typ != TypeDir && st.Nlink > 1 {
		links[key] = n
	}
	return n, nil
}

// readXattrs returns the extended attributes of name (not following
// symlinks), or nil when there are none or the filesystem has none.
func readXattrs(name string) (map[string][]byte, error) {
	size, err := unix.Llistxattr(name, nil)
	if errors.Is(err, unix.ENOTSUP) || size == 0 {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("fstree: listxattr %s: %w", name, err)
	}
	buf := make([]byte, size)
	size, err = unix.Llistxattr(name, buf)
	if err != nil {
		return nil, fmt.Errorf("fstree: listxattr %s: %w", name, err)
	}
	out := make(map[string][]byte)
	for _, k := range strings.Split(strings.TrimRight(string(buf[:size]), "\x00"), "\x00") {
		if k == "" {
			continue
		}
		vs, err := unix.Lgetxattr(name, k, nil)
		if err != nil {
			return nil, fmt.Errorf("fstree: getxattr %s %s: %w", name, k, err)
		}
		v := make([]byte, vs)
		vs, err = unix.Lgetxattr(name, k, v)
		if err != nil {
			return nil, fmt.Errorf("fstree: getxattr %s %s: %w", name, k, err)
		}
		out[k] = v[:vs]
	}
	return out, nil
}
