package fstree

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"sort"
	"strings"
	"time"
)

// Type is the kind of an inode.
type Type uint8

// Inode types.
const (
	TypeRegular Type = iota + 1
	TypeDir
	TypeSymlink
	TypeCharDevice
	TypeBlockDevice
	TypeFIFO
	TypeSocket
)

// String returns a short name of t ("file", "dir", ...).
func (t Type) String() string {
	switch t {
	case TypeRegular:
		return "file"
	case TypeDir:
		return "dir"
	case TypeSymlink:
		return "symlink"
	case TypeCharDevice:
		return "chardev"
	case TypeBlockDevice:
		return "blockdev"
	case TypeFIFO:
		return "fifo"
	case TypeSocket:
		return "socket"
	}
	return fmt.Sprintf("Type(%d)", uint8(t))
}

// Unix file-type bits (S_IFMT and friends), as stored on disk by Linux
// filesystems.
const (
	S_IFMT   = 0o170000
	S_IFSOCK = 0o140000
	S_IFLNK  = 0o120000
	S_IFREG  = 0o100000
	S_IFBLK  = 0o060000
	S_IFDIR  = 0o040000
	S_IFCHR  = 0o020000
	S_IFIFO  = 0o010000
)

// UnixBits returns the S_IF* bits of t, or 0 for an unknown type.
func (t Type) UnixBits() uint32 {
	switch t {
	case TypeRegular:
		return S_IFREG
	case TypeDir:
		return S_IFDIR
	case TypeSymlink:
		return S_IFLNK
	case TypeCharDevice:
		return S_IFCHR
	case TypeBlockDevice:
		return S_IFBLK
	case TypeFIFO:
		return S_IFIFO
	case TypeSocket:
		return S_IFSOCK
	}
	return 0
}

// TypeFromUnix returns the Type of a unix st_mode value (only its S_IFMT
// bits are looked at), or 0 if they name no known type.
func TypeFromUnix(mode uint32) Type {
	switch mode & S_IFMT {
	case S_IFREG:
		return TypeRegular
	case S_IFDIR:
		return TypeDir
	case S_IFLNK:
		return TypeSymlink
	case S_IFCHR:
		return TypeCharDevice
	case S_IFBLK:
		return TypeBlockDevice
	case S_IFIFO:
		return TypeFIFO
	case S_IFSOCK:
		return TypeSocket
	}
	return 0
}

// Content is the data of a regular file. Open may be called several times
// (once per write of the image); each call returns a reader positioned at the
// start that yields exactly Size bytes.
type Content interface {
	Size() int64
	Open() (io.ReadCloser, error)
}

// Inode is one file, directory, symlink or special file. Several directory
// entries may share one *Inode (hard links), except for directories.
type Inode struct {
	Type Type
	// Perm holds the permission bits, including setuid, setgid and sticky
	// (07777); type bits are ignored.
	Perm    uint32
	UID     uint32
	GID     uint32
	ModTime time.Time
	// Major and Minor are the device number of character and block devices.
	Major, Minor uint32
	// Target is the target of a symlink.
	Target string
	// Xattrs maps full extended attribute names ("user.foo",
	// "security.capability") to values. Writers sort by name.
	Xattrs map[string][]byte
	// Content is the data of a regular file; nil means empty.
	Content Content

	children map[string]*Inode // directories only
}

// NewDir returns a directory inode with no entries.
func NewDir(perm, uid, gid uint32, mtime time.Time) *Inode {
	return &Inode{Type: TypeDir, Perm: perm & 0o7777, UID: uid, GID: gid, ModTime: mtime}
}

// Mode returns the unix st_mode value: type bits | permission bits.
func (n *Inode) Mode() uint32 { return n.Type.UnixBits() | n.Perm&0o7777 }

// FileMode returns the mode as an fs.FileMode.
func (n *Inode) FileMode() fs.FileMode {
	m := fs.FileMode(n.Perm & 0o777)
	if n.Perm&0o4000 != 0 {
		m |= fs.ModeSetuid
	}
	if n.Perm&0o2000 != 0 {
		m |= fs.ModeSetgid
	}
	if n.Perm&0o1000 != 0 {
		m |= fs.ModeSticky
	}
	switch n.Type {
	case TypeDir:
		m |= fs.ModeDir
	case TypeSymlink:
		m |= fs.ModeSymlink
	case TypeCharDevice:
		m |= fs.ModeDevice | fs.ModeCharDevice
	case TypeBlockDevice:
		m |= fs.ModeDevice
	case TypeFIFO:
		m |= fs.ModeNamedPipe
	case TypeSocket:
		m |= fs.ModeSocket
	}
	return m
}

// Size returns the size of the inode's data: content size for regular
// files, target length for symlinks, 0 otherwise (directory sizes depend on
// the on-disk format).
func (n *Inode) Size() int64 {
	switch n.Type {
	case TypeRegular:
		if n.Content == nil {
			return 0
		}
		return n.Content.Size()
	case TypeSymlink:
		return int64(len(n.Target))
	}
	return 0
}

// DirEntry is one named entry of a directory.
type DirEntry struct {
	Name  string
	Inode *Inode
}

// Entries returns the entries of directory n sorted by name (byte-wise),
// without "." and "..". It returns nil for non-directories.
func (n *Inode) Entries() []DirEntry {
	if n.Type != TypeDir || len(n.children) == 0 {
		return nil
	}
	out := make([]DirEntry, 0, len(n.children))
	for name, c := range n.children {
		out = append(out, DirEntry{name, c})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Child returns the entry name of directory n, or nil.
func (n *Inode) Child(name string) *Inode {
	return n.children[name]
}

// Len returns the number of entries of directory n.
func (n *Inode) Len() int { return len(n.children) }

// Errors returned by Tree methods, wrapped in *PathError.
var (
	ErrNotExist = fs.ErrNotExist
	ErrExist    = fs.ErrExist
	ErrNotDir   = errors.New("not a directory")
	ErrInvalid  = fs.ErrInvalid
	// ErrDirLinked reports a directory inode inserted in two places.
	ErrDirLinked = errors.New("directory linked more than once")
)

// PathError records the operation and path that failed.
type PathError = fs.PathError

// Tree is a filesystem tree rooted at a directory inode.
type Tree struct {
	root *Inode
}

// New returns a tree whose root is a directory with mode 0755, owned by
// 0:0, with mtime zero (Unix epoch is used by writers for the zero time).
func New() *Tree {
	return &Tree{root: NewDir(0o755, 0, 0, time.Time{})}
}

// Root returns the root directory inode; its metadata may be changed.
func (t *Tree) Root() *Inode { return t.root }

// Clean returns p cleaned and relative to the root: "" for the root itself.
func Clean(p string) string {
	c := path.Clean("/" + p)
	return strings.TrimPrefix(c, "/")
}

// split returns the parent directory and base name of cleaned p.
func split(p string) (dir, base string) {
	i := strings.LastIndexByte(p, '/')
	if i < 0 {
		return "", p
	}
	return p[:i], p[i+1:]
}

// walkTo returns the inode at cleaned path p, following no symlinks.
func (t *Tree) walkTo(op, orig, p string) (*Inode, error) {
	n := t.root
	if p == "" {
		return n, nil
	}
	for _, name := range strings.Split(p, "/") {
		if n.Type != TypeDir {
			return nil, &PathError{Op: op, Path: orig, Err: ErrNotDir}
		}
		c := n.children[name]
		if c == nil {
			return nil, &PathError{Op: op, Path: orig, Err: ErrNotExist}
		}
		n = c
	}
	return n, nil
}

// Lookup returns the inode at p. Symlinks are not followed.
func (t *Tree) Lookup(p string) (*Inode, error) {
	return t.walkTo("lookup", p, Clean(p))
}

// Insert puts n at p. The parent of p must exist and be a directory.
// An existing entry at p is replaced (as a later container layer replaces
// an earlier one), except that when both the existing entry and n are
// directories and n has no entries, n takes over the existing entries:
// a later layer's directory header changes metadata, not content.
// Inserting at the root replaces the root's metadata the same way.
// Inserting an inode that is already linked elsewhere in the tree creates
// a hard link; directories must not be hard-linked (a directory inode
// inserted twice makes the tree a graph; writers report it as an error).
func (t *Tree) Insert(p string, n *Inode) error {
	cp := Clean(p)
	if n == nil || n.Type < TypeRegular || n.Type > TypeSocket {
		return &PathError{Op: "insert", Path: p, Err: ErrInvalid}
	}
	if cp == "" {
		if n.Type != TypeDir {
			return &PathError{Op: "insert", Path: p, Err: ErrNotDir}
		}
		if n != t.root && len(n.children) == 0 {
			n.children = t.root.children
		}
		t.root = n
		return nil
	}
	dir, base := split(cp)
	parent, err := t.walkTo("insert", p, dir)
	if err != nil {
		return err
	}
	if parent.Type != TypeDir {
		return &PathError{Op: "insert", Path: p, Err: ErrNotDir}
	}
	old := parent.children[base]
	if old == n {
		return nil
	}
	if n.Type == TypeDir {
		if old != nil && old.Type == TypeDir && len(n.children) == 0 {
			n.children = old.children
			old.children = nil
		}
	}
	if parent.children == nil {
		parent.children = make(map[string]*Inode)
	}
	parent.children[base] = n
	return nil
}

// MkdirAll makes sure p and all its parents exist as directories. Missing
// ones are created with the metadata of tmpl (its Perm, UID, GID, ModTime
// and Xattrs, copied). It returns the directory at p; an existing non-directory
// on the way is an ErrNotDir error.
func (t *Tree) MkdirAll(p string, tmpl Inode) (*Inode, error) {
	cp := Clean(p)
	n := t.root
	if cp == "" {
		return n, nil
	}
	for _, name := range strings.Split(cp, "/") {
		c := n.children[name]
		if c == nil {
			c = NewDir(tmpl.Perm, tmpl.UID, tmpl.GID, tmpl.ModTime)
			if len(tmpl.Xattrs) > 0 {
				c.Xattrs = make(map[string][]byte, len(tmpl.Xattrs))
				for k, v := range tmpl.Xattrs {
					c.Xattrs[k] = append([]byte(nil), v...)
				}
			}
			if n.children == nil {
				n.children = make(map[string]*Inode)
			}
			n.children[name] = c
		} else if c.Type != TypeDir {
			return nil, &PathError{Op: "mkdir", Path: p, Err: ErrNotDir}
		}
		n = c
	}
	return n, nil
}

// Remove deletes the entry at p and, for a directory, everything below it.
// Other hard links to a removed inode stay. Removing the root empties it.
func (t *Tree) Remove(p string) error {
	cp := Clean(p)
	if cp == "" {
		t.root.children = nil
		return nil
	}
	dir, base := split(cp)
	parent, err := t.walkTo("remove", p, dir)
	if err != nil {
		return err
	}
	if parent.Type != TypeDir {
		return &PathError{Op: "remove", Path: p, Err: ErrNotDir}
	}
	if parent.children[base] == nil {
		return &PathError{Op: "remove", Path: p, Err: ErrNotExist}
	}
	delete(parent.children, base)
	return nil
}

// RemoveChildren deletes every entry of the directory at p, keeping p
// itself (an OCI opaque whiteout).
func (t *Tree) RemoveChildren(p string) error {
	n, err := t.walkTo("remove", p, Clean(p))
	if err != nil {
		return err
	}
	if n.Type != TypeDir {
		return &PathError{Op: "remove", Path: p, Err: ErrNotDir}
	}
	n.children = nil
	return nil
}

// SkipDir, returned by a WalkFunc for a directory, skips its entries.
var SkipDir = fs.SkipDir

// WalkFunc is called by Walk for every entry. p is the cleaned path
// relative to the root ("" for the root itself).
type WalkFunc func(p string, n *Inode) error

// Walk calls fn for the root and then every entry of the tree, depth first,
// entries of a directory in byte-wise name order, a directory before its
// entries. A hard-linked inode is visited once per link; a directory
// reached twice (linked in two places, or into its own subtree) stops the
// walk with an ErrDirLinked error. If fn returns
// SkipDir for a directory its entries are skipped; any other error stops the
// walk and is returned.
func (t *Tree) Walk(fn WalkFunc) error {
	err := walk("", t.root, fn, make(map[*Inode]bool))
	if err == SkipDir {
		return nil
	}
	return err
}

func walk(p string, n *Inode, fn WalkFunc, seen map[*Inode]bool) error {
	if n.Type == TypeDir {
		if seen[n] {
			return &PathError{Op: "walk", Path: p, Err: ErrDirLinked}
		}
		seen[n] = true
	}
	if err := fn(p, n); err != nil {
		return err
	}
	for _, e := range n.Entries() {
		cp := e.Name
		if p != "" {
			cp = p + "/" + e.Name
		}
		if err := walk(cp, e.Inode, fn, seen); err != nil {
			if err == SkipDir && e.Inode.Type == TypeDir {
				continue
			}
			return err
		}
	}
	return nil
}

// Links returns the link count of every inode in the tree, as a filesystem
// would report it: for a non-directory the number of directory entries
// pointing to it, for a directory 2 plus its number of subdirectories.
//
// A directory linked in two places is counted once (Walk reports it).
func (t *Tree) Links() map[*Inode]uint32 {
	m := make(map[*Inode]uint32)
	var visit func(n *Inode)
	visit = func(n *Inode) {
		if n.Type == TypeDir {
			m[n] += 2
		}
		for _, c := range n.children {
			if c.Type == TypeDir {
				m[n]++
				if _, seen := m[c]; !seen {
					visit(c)
				}
			} else {
				m[c]++
			}
		}
	}
	visit(t.root)
	return m
}
