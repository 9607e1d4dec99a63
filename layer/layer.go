package layer

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
	"time"

	"github.com/enclave-storage/enclave-storage/fstree"
)

// Errors wrapped by *EntryError, for callers that branch on the cause.
var (
	// ErrUnsafePath: an entry name or hard-link target climbs above the
	// root of the filesystem.
	ErrUnsafePath = errors.New("path escapes the root")
	// ErrBadLink: a hard link whose target does not exist or is a
	// directory.
	ErrBadLink = errors.New("bad hard link")
	// ErrUnsupported: a tar entry type that has no place in a root
	// filesystem.
	ErrUnsupported = errors.New("unsupported tar entry type")
	// ErrMalformed: an entry that makes no sense (a whiteout of "..",
	// a root that is not a directory, a negative size).
	ErrMalformed = errors.New("malformed entry")
)

// EntryError reports a tar entry that could not be applied.
type EntryError struct {
	Layer string // the layer's name, as given to Apply (a digest)
	Entry string // the entry's name as found in the tar stream
	Err   error
}

func (e *EntryError) Error() string {
	return fmt.Sprintf("layer %s: entry %q: %v", e.Layer, e.Entry, e.Err)
}

func (e *EntryError) Unwrap() error { return e.Err }

// Options tune a Flattener.
type Options struct {
	// SpoolDir is the directory of the content spool file; empty means
	// os.TempDir().
	SpoolDir string
	// Limits bound sizes and counts; zero fields take their defaults.
	Limits Limits
	// Policy says which privileges of the image are kept.
	Policy Policy
}

// Flattener applies layers, in order, to a tree. It is not safe for
// concurrent use.
type Flattener struct {
	tree      *fstree.Tree
	spool     *os.File
	spoolName string // set while the spool still has to be removed
	off       int64  // spool bytes so far, buffered ones included
	// buf holds the spool's last bytes until it is full or Apply
	// returns: one write per spoolBuf bytes instead of one or more per
	// file, and no copy buffer per file.
	buf     []byte
	entries int
	closed  bool

	limits     Limits
	policy     Policy
	stats      Stats
	xattrBytes int64
	// dropped holds the paths of device nodes the policy dropped, so that
	// hard links to them are dropped too instead of failing.
	dropped map[string]bool
}

// New returns a Flattener with an empty tree and a new spool file.
func New(opts Options) (*Flattener, error) {
	f, err := os.CreateTemp(opts.SpoolDir, "layer-spool-*")
	if err != nil {
		return nil, fmt.Errorf("layer: creating content spool: %w", err)
	}
	fl := &Flattener{tree: fstree.New(), spool: f, limits: opts.Limits.withDefaults(), policy: opts.Policy}
	// Unlink at once where the OS allows it, so a crash leaves nothing.
	if err := os.Remove(f.Name()); err != nil {
		fl.spoolName = f.Name()
	}
	return fl, nil
}

// Tree returns the flattened tree. Its regular files' content reads from
// the spool, so the tree is valid only until Close.
func (fl *Flattener) Tree() *fstree.Tree { return fl.tree }

// SpoolSize returns the number of content bytes spooled so far.
func (fl *Flattener) SpoolSize() int64 { return fl.off }

// Entries returns the number of tar entries applied so far.
func (fl *Flattener) Entries() int { return fl.entries }

// Stats returns what the policy removed so far.
func (fl *Flattener) Stats() Stats { return fl.stats }

// Close releases the spool. The tree's file content is unreadable after.
func (fl *Flattener) Close() error {
	if fl.closed {
		return nil
	}
	fl.closed = true
	err := fl.spool.Close()
	if fl.spoolName != "" {
		if rerr := os.Remove(fl.spoolName); rerr != nil && err == nil {
			err = rerr
		}
	}
	if err != nil {
		return fmt.Errorf("layer: closing spool: %w", err)
	}
	return nil
}

// applier holds the state of one layer being applied.
type applier struct {
	fl   *Flattener
	name string
	// touched holds every path this layer added and all their parents:
	// whiteouts hide lower layers only, never these.
	touched map[string]bool
}

// spoolBuf is the size of the spool's write buffer.
const spoolBuf = 1 << 20

// Apply reads the tar stream r of one layer and applies it to the tree.
// name identifies the layer in errors (use its digest). On error the tree
// is left partly updated and should be discarded.
func (fl *Flattener) Apply(ctx context.Context, r io.Reader, name string) (err error) {
	if fl.closed {
		return fmt.Errorf("layer %s: flattener closed", name)
	}
	// The tree's content reads the spool: it must all be there on return.
	defer func() {
		if ferr := fl.flush(); err == nil && ferr != nil {
			err = fmt.Errorf("layer %s: %w", name, ferr)
		}
	}()
	a := &applier{fl: fl, name: name, touched: map[string]bool{"": true}}
	tr := tar.NewReader(r)
	for {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("layer %s: %w", name, err)
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("layer %s: reading tar: %w", name, err)
		}
		fl.entries++
		err = fl.checkHeader(hdr)
		if err == nil {
			err = a.entry(hdr, tr)
		}
		if err != nil {
			var ee *EntryError
			if errors.As(err, &ee) {
				return err
			}
			return &EntryError{Layer: name, Entry: hdr.Name, Err: err}
		}
	}
}

// whiteout prefixes, from the OCI image-spec.
const (
	whPrefix = ".wh."
	whMeta   = ".wh..wh."
	whOpaque = ".wh..wh..opq"
)

// maxSymlinks bounds symlink resolution of parent paths, as Linux does.
const maxSymlinks = 40

// cleanName returns the tree path of a tar name: relative, cleaned, ""
// for the root. A name climbing above the root is an error.
func cleanName(name string) (string, error) {
	p := strings.TrimLeft(name, "/")
	if p == "" {
		return "", nil
	}
	p = path.Clean(p)
	if p == ".." || strings.HasPrefix(p, "../") {
		return "", ErrUnsafePath
	}
	if p == "." {
		return "", nil
	}
	return p, nil
}

func (a *applier) entry(hdr *tar.Header, tr io.Reader) error {
	p, err := cleanName(hdr.Name)
	if err != nil {
		return err
	}
	dir, base := path.Split(p)
	dir = strings.TrimSuffix(dir, "/")
	if base != whOpaque && (strings.HasPrefix(p, whMeta) || strings.Contains(p, "/"+whMeta)) {
		// Other ".wh..wh." names are aufs bookkeeping (hard-link
		// directories and what is in them); runtimes skip them.
		return nil
	}
	// Resolve the parent through symlinks inside the tree, creating
	// missing directories, as a runtime's MkdirAll in a chroot would.
	if p != "" {
		if dir, err = a.resolveDir(dir); err != nil {
			return err
		}
		p = join(dir, base)
	}

	switch {
	case base == whOpaque:
		return a.opaque(dir)
	case strings.HasPrefix(base, whPrefix):
		target := base[len(whPrefix):]
		if target == "" || target == "." || target == ".." {
			return fmt.Errorf("whiteout of %q: %w", target, ErrMalformed)
		}
		return a.removeLower(join(dir, target))
	}

	if isSparse(hdr) {
		// A few bytes of sparse map can declare terabytes of holes, which
		// would all land in the spool; image builders never write them.
		return fmt.Errorf("GNU sparse file: %w", ErrUnsupported)
	}
	xa, err := a.fl.xattrs(hdr)
	if err != nil {
		return err
	}
	n := &fstree.Inode{
		Perm:    uint32(hdr.Mode) & 0o7777,
		UID:     uint32(hdr.Uid),
		GID:     uint32(hdr.Gid),
		ModTime: hdr.ModTime.UTC(),
		Xattrs:  xa,
	}
	switch hdr.Typeflag {
	case tar.TypeReg, '\x00': // '\x00' is the pre-POSIX regular file (tar.TypeRegA)
		n.Type = fstree.TypeRegular
		if a.fl.policy.DropSetuid && n.Perm&0o6000 != 0 {
			n.Perm &^= 0o6000
			a.fl.stats.ClearedSetuid++
		}
		if hdr.Size < 0 {
			return fmt.Errorf("negative size %d", hdr.Size)
		}
		if hdr.Size > 0 {
			c, err := a.fl.spoolContent(tr, hdr.Size)
			if err != nil {
				return err
			}
			n.Content = c
		}
	case tar.TypeDir:
		n.Type = fstree.TypeDir
	case tar.TypeSymlink:
		n.Type = fstree.TypeSymlink
		n.Target = hdr.Linkname
	case tar.TypeChar, tar.TypeBlock:
		n.Type = fstree.TypeCharDevice
		if hdr.Typeflag == tar.TypeBlock {
			n.Type = fstree.TypeBlockDevice
		}
		if hdr.Devmajor < 0 || hdr.Devminor < 0 || hdr.Devmajor > 0xfff || hdr.Devminor > 0xfffff {
			return fmt.Errorf("device number %d:%d out of range", hdr.Devmajor, hdr.Devminor)
		}
		n.Major, n.Minor = uint32(hdr.Devmajor), uint32(hdr.Devminor)
		if !a.fl.policy.KeepDevices {
			return a.dropDevice(p)
		}
	case tar.TypeFifo:
		n.Type = fstree.TypeFIFO
	case tar.TypeLink:
		return a.link(p, hdr.Linkname)
	default:
		return fmt.Errorf("type %q: %w", hdr.Typeflag, ErrUnsupported)
	}
	if p == "" && n.Type != fstree.TypeDir {
		return fmt.Errorf("root is a %s: %w", n.Type, ErrMalformed)
	}
	a.touch(p)
	return a.fl.tree.Insert(p, n)
}

func join(dir, base string) string {
	if dir == "" {
		return base
	}
	return dir + "/" + base
}

// touch records that this layer wrote p (and so its parents).
func (a *applier) touch(p string) {
	for {
		a.touched[p] = true
		if p == "" {
			return
		}
		i := strings.LastIndexByte(p, '/')
		if i < 0 {
			p = ""
		} else {
			p = p[:i]
		}
	}
}

// link makes p a hard link to the inode at target.
func (a *applier) link(p, target string) error {
	t, err := cleanName(target)
	if err != nil {
		return fmt.Errorf("hard link to %q: %w", target, err)
	}
	tdir, tbase := path.Split(t)
	if t != "" {
		tdir, err = a.resolveExisting(strings.TrimSuffix(tdir, "/"))
		if err != nil {
			return fmt.Errorf("hard link to %q: %w: %v", target, ErrBadLink, err)
		}
		t = join(tdir, tbase)
	}
	n, err := a.fl.tree.Lookup(t)
	if err != nil && a.fl.dropped[t] {
		return a.dropDevice(p) // a link to a dropped device node
	}
	if err != nil {
		return fmt.Errorf("hard link to %q: %w: %v", target, ErrBadLink, err)
	}
	if n.Type == fstree.TypeDir {
		return fmt.Errorf("hard link to directory %q: %w", target, ErrBadLink)
	}
	if p == "" {
		return fmt.Errorf("hard link at the root: %w", ErrBadLink)
	}
	a.touch(p)
	return a.fl.tree.Insert(p, n)
}

// dropDevice leaves the device node at p out of the tree: whatever lower
// layers had at p is gone, as the node replaced it.
func (a *applier) dropDevice(p string) error {
	if p == "" {
		return fmt.Errorf("root is a device: %w", ErrMalformed)
	}
	a.fl.stats.DroppedDevices++
	if a.fl.dropped == nil {
		a.fl.dropped = make(map[string]bool)
	}
	a.fl.dropped[p] = true
	a.touch(p)
	if err := a.fl.tree.Remove(p); err != nil && !errors.Is(err, fstree.ErrNotExist) {
		return err
	}
	return nil
}

// opaque hides the lower layers' entries of dir.
func (a *applier) opaque(dir string) error {
	n, err := a.fl.tree.Lookup(dir)
	if err != nil || n.Type != fstree.TypeDir {
		// resolveDir made it; nothing below to hide.
		return nil
	}
	a.touch(dir)
	for _, e := range n.Entries() {
		if err := a.removeLower(join(dir, e.Name)); err != nil {
			return err
		}
	}
	return nil
}

// removeLower deletes p as the lower layers had it: what this layer added
// at or below p stays.
func (a *applier) removeLower(p string) error {
	n, err := a.fl.tree.Lookup(p)
	if err != nil {
		return nil // nothing to delete: whiteouts of absent names are legal
	}
	if !a.touched[p] {
		return a.fl.tree.Remove(p)
	}
	if n.Type != fstree.TypeDir {
		return nil
	}
	for _, e := range n.Entries() {
		if err := a.removeLower(join(p, e.Name)); err != nil {
			return err
		}
	}
	return nil
}

// resolveDir returns the tree path of directory dir after following
// symlinks among its components (confined to the root), creating missing
// directories. A non-directory on the way is replaced by nothing: it is an
// error, as for a runtime.
func (a *applier) resolveDir(dir string) (string, error) {
	return a.resolve(dir, true)
}

// resolveExisting is resolveDir without creating anything.
func (a *applier) resolveExisting(dir string) (string, error) {
	return a.resolve(dir, false)
}

func (a *applier) resolve(dir string, create bool) (string, error) {
	if dir == "" {
		return "", nil
	}
	links := 0
	var done []string // resolved components
	todo := strings.Split(dir, "/")
	for len(todo) > 0 {
		name := todo[0]
		todo = todo[1:]
		switch name {
		case "", ".":
			continue
		case "..":
			// Symlink targets may climb; the root's parent is the root.
			if len(done) > 0 {
				done = done[:len(done)-1]
			}
			continue
		}
		cur := strings.Join(append(done, name), "/")
		n, err := a.fl.tree.Lookup(cur)
		switch {
		case errors.Is(err, fstree.ErrNotExist):
			if !create {
				return "", fmt.Errorf("%s: %w", cur, fstree.ErrNotExist)
			}
			if _, err := a.fl.tree.MkdirAll(cur, fstree.Inode{Perm: 0o755, ModTime: time.Time{}}); err != nil {
				return "", err
			}
			a.touch(cur)
			done = append(done, name)
		case err != nil:
			return "", err
		case n.Type == fstree.TypeDir:
			done = append(done, name)
		case n.Type == fstree.TypeSymlink:
			links++
			if links > maxSymlinks {
				return "", fmt.Errorf("%s: too many levels of symbolic links", dir)
			}
			if strings.HasPrefix(n.Target, "/") {
				done = done[:0]
			}
			todo = append(strings.Split(n.Target, "/"), todo...)
		default:
			return "", fmt.Errorf("parent %s is a %s: %w", cur, n.Type, fstree.ErrNotDir)
		}
	}
	return strings.Join(done, "/"), nil
}

// spoolContent copies size bytes of r to the spool, reading them
// straight into its write buffer, and returns the content reference.
func (fl *Flattener) spoolContent(r io.Reader, size int64) (fstree.Content, error) {
	if fl.buf == nil {
		fl.buf = make([]byte, 0, spoolBuf)
	}
	off := fl.off
	for left := size; left > 0; {
		if len(fl.buf) == cap(fl.buf) {
			if err := fl.flush(); err != nil {
				return nil, err
			}
		}
		room := fl.buf[len(fl.buf):min(int64(cap(fl.buf)), int64(len(fl.buf))+left)]
		n, err := r.Read(room)
		fl.buf = fl.buf[:len(fl.buf)+n]
		fl.off += int64(n)
		left -= int64(n)
		if left == 0 {
			break
		}
		if err == io.EOF {
			return nil, fmt.Errorf("content: %d of %d bytes: %w", size-left, size, io.ErrUnexpectedEOF)
		}
		if err != nil {
			return nil, fmt.Errorf("spooling content: %w", err)
		}
	}
	return fstree.SectionContent{R: fl.spool, Offset: off, Length: size}, nil
}

// flush writes the buffered spool bytes out.
func (fl *Flattener) flush() error {
	if len(fl.buf) == 0 {
		return nil
	}
	if _, err := fl.spool.WriteAt(fl.buf, fl.off-int64(len(fl.buf))); err != nil {
		return fmt.Errorf("spooling content: %w", err)
	}
	fl.buf = fl.buf[:0]
	return nil
}

// xattrPAX is the PAX record prefix of extended attributes, as GNU tar,
// bsdtar, docker and buildkit write them.
const xattrPAX = "SCHILY.xattr."

// isSparse reports whether hdr is a GNU sparse file, old-style or PAX.
func isSparse(hdr *tar.Header) bool {
	if hdr.Typeflag == tar.TypeGNUSparse {
		return true
	}
	for k := range hdr.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return true
		}
	}
	return false
}
