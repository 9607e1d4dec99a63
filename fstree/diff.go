package fstree

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"sort"
)

// DiffOptions selects what Diff ignores.
type DiffOptions struct {
	IgnoreOwner     bool // uid and gid
	IgnoreModTime   bool
	IgnoreXattrs    bool
	IgnoreHardLinks bool // whether paths share an inode
	// IgnoreXattr, if set, reports xattr names to leave out on both sides
	// (for example security.selinux added by the host).
	IgnoreXattr func(name string) bool
}

// Diff compares two trees entry by entry: presence, type, permissions,
// ownership, mtime (to the nanosecond), size and content (SHA-256),
// symlink target, device numbers, xattrs and hard-link structure. It
// returns one line per difference, empty when the trees are equal, and an
// error only when content cannot be read. It is meant for tests and
// checks, such as comparing a tree with what an image gives back.
func Diff(a, b *Tree, opts DiffOptions) ([]string, error) {
	var out []string
	bpaths := make(map[string]bool)
	b.Walk(func(p string, _ *Inode) error { bpaths[p] = true; return nil })
	firstA := make(map[*Inode]string)
	firstB := make(map[*Inode]string)
	err := a.Walk(func(p string, na *Inode) error {
		nb, err := b.Lookup(p)
		if err != nil {
			out = append(out, fmt.Sprintf("/%s: only in first tree", p))
			if na.Type == TypeDir {
				return SkipDir
			}
			return nil
		}
		delete(bpaths, p)
		d, err := diffInode(na, nb, opts)
		if err != nil {
			return fmt.Errorf("/%s: %w", p, err)
		}
		for _, s := range d {
			out = append(out, fmt.Sprintf("/%s: %s", p, s))
		}
		if !opts.IgnoreHardLinks && na.Type != TypeDir {
			fa, okA := firstA[na]
			fb, okB := firstB[nb]
			if !okA {
				firstA[na], fa = p, p
			}
			if !okB {
				firstB[nb], fb = p, p
			}
			if fa != fb {
				out = append(out, fmt.Sprintf("/%s: hard-linked with /%s in first tree, /%s in second", p, fa, fb))
			}
		}
		if na.Type == TypeDir && nb.Type != TypeDir {
			return SkipDir
		}
		return nil
	})
	if err != nil {
		return out, err
	}
	var extra []string
	for p := range bpaths {
		extra = append(extra, p)
	}
	sort.Strings(extra)
	for _, p := range extra {
		out = append(out, fmt.Sprintf("/%s: only in second tree", p))
	}
	return out, nil
}

func diffInode(a, b *Inode, opts DiffOptions) ([]string, error) {
	var out []string
	add := func(format string, args ...any) { out = append(out, fmt.Sprintf(format, args...)) }
	if a.Type != b.Type {
		add("type %v != %v", a.Type, b.Type)
		return out, nil
	}
	if a.Perm&0o7777 != b.Perm&0o7777 {
		add("perm %#o != %#o", a.Perm&0o7777, b.Perm&0o7777)
	}
	if !opts.IgnoreOwner && (a.UID != b.UID || a.GID != b.GID) {
		add("owner %d:%d != %d:%d", a.UID, a.GID, b.UID, b.GID)
	}
	if !opts.IgnoreModTime && !a.ModTime.Equal(b.ModTime) && !(a.ModTime.IsZero() && b.ModTime.Unix() == 0 || b.ModTime.IsZero() && a.ModTime.Unix() == 0) {
		add("mtime %v != %v", a.ModTime, b.ModTime)
	}
	switch a.Type {
	case TypeRegular:
		if a.Size() != b.Size() {
			add("size %d != %d", a.Size(), b.Size())
			break
		}
		ha, err := contentHash(a.Content)
		if err != nil {
			return nil, err
		}
		hb, err := contentHash(b.Content)
		if err != nil {
			return nil, err
		}
		if ha != hb {
			add("content differs")
		}
	case TypeSymlink:
		if a.Target != b.Target {
			add("symlink target %q != %q", a.Target, b.Target)
		}
	case TypeCharDevice, TypeBlockDevice:
		if a.Major != b.Major || a.Minor != b.Minor {
			add("device %d:%d != %d:%d", a.Major, a.Minor, b.Major, b.Minor)
		}
	}
	if !opts.IgnoreXattrs {
		keys := make(map[string]bool)
		for k := range a.Xattrs {
			keys[k] = true
		}
		for k := range b.Xattrs {
			keys[k] = true
		}
		var names []string
		for k := range keys {
			if opts.IgnoreXattr == nil || !opts.IgnoreXattr(k) {
				names = append(names, k)
			}
		}
		sort.Strings(names)
		for _, k := range names {
			va, okA := a.Xattrs[k]
			vb, okB := b.Xattrs[k]
			if okA != okB || !bytes.Equal(va, vb) {
				add("xattr %s: %q (%v) != %q (%v)", k, va, okA, vb, okB)
			}
		}
	}
	return out, nil
}

func contentHash(c Content) ([32]byte, error) {
	var sum [32]byte
	if c == nil {
		return sha256.Sum256(nil), nil
	}
	r, err := c.Open()
	if err != nil {
		return sum, err
	}
	defer r.Close()
	h := sha256.New()
	if _, err := io.Copy(h, r); err != nil {
		return sum, fmt.Errorf("read content: %w", err)
	}
	h.Sum(sum[:0])
	return sum, nil
}
