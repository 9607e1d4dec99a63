package cpio

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"path"
	"sort"
	"strings"
)

// Archive collects entries and writes them as a reproducible archive:
// sorted by name, missing parent directories added (mode 0755), inode
// numbers 1, 2, 3... in that order, every entry stamped with ModTime and
// owned by UID:GID. The zero value is ready to use and stamps mtime 0,
// owner 0:0.
type Archive struct {
	// ModTime is the modification time of every entry, in seconds since
	// the Unix epoch (use SOURCE_DATE_EPOCH for reproducible builds).
	ModTime int64
	// UID and GID own every entry.
	UID, GID uint32

	entries map[string]entry
}

type entry struct {
	mode     fs.FileMode
	data     []byte
	linkname string
	rmaj     uint32
	rmin     uint32
}

// clean turns name into the relative, slash-separated form stored in the
// archive, rejecting names that escape the root.
func clean(name string) (string, error) {
	c := path.Clean("/" + name)
	if c == "/" || strings.IndexByte(name, 0) >= 0 {
		return "", fmt.Errorf("%w: bad name %q", ErrInvalidHeader, name)
	}
	return c[1:], nil
}

func (a *Archive) add(name string, e entry) error {
	n, err := clean(name)
	if err != nil {
		return err
	}
	if a.entries == nil {
		a.entries = make(map[string]entry)
	}
	if old, ok := a.entries[n]; ok && !(old.mode.IsDir() && e.mode.IsDir()) {
		return fmt.Errorf("%w: %q added twice", ErrInvalidHeader, n)
	}
	a.entries[n] = e
	return nil
}

// AddDir adds a directory with permission bits perm.
func (a *Archive) AddDir(name string, perm fs.FileMode) error {
	return a.add(name, entry{mode: fs.ModeDir | perm&(fs.ModePerm|fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky)})
}

// AddFile adds a regular file holding data. The Archive keeps data until
// WriteTo; callers must not modify it before then.
func (a *Archive) AddFile(name string, perm fs.FileMode, data []byte) error {
	return a.add(name, entry{mode: perm & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky), data: data})
}

// AddSymlink adds a symbolic link to target.
func (a *Archive) AddSymlink(name, target string) error {
	if target == "" {
		return fmt.Errorf("%w: symlink %q has no target", ErrInvalidHeader, name)
	}
	return a.add(name, entry{mode: fs.ModeSymlink | 0o777, linkname: target})
}

// AddDevice adds a device node; char selects a character device rather
// than a block device.
func (a *Archive) AddDevice(name string, perm fs.FileMode, char bool, major, minor uint32) error {
	m := fs.ModeDevice | perm.Perm()
	if char {
		m |= fs.ModeCharDevice
	}
	return a.add(name, entry{mode: m, rmaj: major, rmin: minor})
}

// Names returns the entries' names in archive order, parents included.
func (a *Archive) Names() []string {
	names, _ := a.names()
	return names
}

// names returns the sorted names and the set of names that are parents.
func (a *Archive) names() ([]string, map[string]bool) {
	all := make(map[string]bool, len(a.entries))
	parents := make(map[string]bool)
	for n := range a.entries {
		all[n] = true
		for d := path.Dir(n); d != "."; d = path.Dir(d) {
			all[d] = true
			parents[d] = true
		}
	}
	names := make([]string, 0, len(all))
	for n := range all {
		names = append(names, n)
	}
	sort.Strings(names)
	return names, parents
}

// WriteTo writes the archive, trailer included, to w. It checks ctx between
// entries.
func (a *Archive) WriteTo(w io.Writer) (int64, error) {
	return a.Write(context.Background(), w)
}

// Write is WriteTo with a context, checked between entries.
func (a *Archive) Write(ctx context.Context, w io.Writer) (int64, error) {
	cw := NewWriter(w)
	names, parents := a.names()
	for i, n := range names {
		if err := ctx.Err(); err != nil {
			return cw.Len(), err
		}
		e, ok := a.entries[n]
		if !ok {
			e = entry{mode: fs.ModeDir | 0o755}
		} else if !e.mode.IsDir() && parents[n] {
			return cw.Len(), fmt.Errorf("%w: %q is not a directory but has entries under it", ErrInvalidHeader, n)
		}
		h := &Header{
			Name:      n,
			Mode:      e.mode,
			UID:       a.UID,
			GID:       a.GID,
			ModTime:   a.ModTime,
			Inode:     uint32(i + 1),
			Size:      int64(len(e.data)),
			Linkname:  e.linkname,
			RdevMajor: e.rmaj,
			RdevMinor: e.rmin,
		}
		if err := cw.WriteHeader(h); err != nil {
			return cw.Len(), err
		}
		if len(e.data) > 0 {
			if _, err := cw.Write(e.data); err != nil {
				return cw.Len(), err
			}
		}
	}
	err := cw.Close()
	return cw.Len(), err
}
