package erofs

import (
	"io"
	"io/fs"
	"path"
	"strings"
	"time"

	"github.com/enclave-storage/enclave-storage/fstree"
)

// FS implements io/fs.FS, so fs.WalkDir, fs.ReadFile and the rest of the
// standard library's file-system helpers work on an image. Symlinks are
// not followed (Open of a symlink returns the link itself, with an empty
// body); FileInfo.Sys returns the *Inode.
var _ fs.ReadDirFS = (*FS)(nil)

// validPath is fs.ValidPath without its UTF-8 check: Linux file names are
// bytes, and an image may hold names that are not UTF-8.
func validPath(name string) bool {
	if name == "." {
		return true
	}
	for {
		i := strings.IndexByte(name, '/')
		elem := name
		if i >= 0 {
			elem = name[:i]
		}
		if elem == "" || elem == "." || elem == ".." {
			return false
		}
		if i < 0 {
			return true
		}
		name = name[i+1:]
	}
}

// Open opens the named file: an fs.ValidPath, "." for the root, except that
// names need not be UTF-8.
func (f *FS) Open(name string) (fs.File, error) {
	if !validPath(name) {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrInvalid}
	}
	in, err := f.Lookup(name)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: name, Err: underlying(err)}
	}
	fi := fileInfo{name: path.Base(name), in: in}
	if name == "." {
		fi.name = "."
	}
	if in.Type == fstree.TypeDir {
		return &dirFile{fsys: f, fi: fi}, nil
	}
	var r *io.SectionReader
	if in.Type == fstree.TypeRegular {
		if r, err = f.Data(in); err != nil {
			return nil, &fs.PathError{Op: "open", Path: name, Err: err}
		}
	} else {
		r = io.NewSectionReader(eofReader{}, 0, 0)
	}
	return &file{SectionReader: r, fi: fi}, nil
}

// ReadDir lists the named directory sorted by name, without "." and "..".
func (f *FS) ReadDir(name string) ([]fs.DirEntry, error) {
	file, err := f.Open(name)
	if err != nil {
		return nil, err
	}
	defer file.Close()
	d, ok := file.(*dirFile)
	if !ok {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: ErrNotDir}
	}
	return d.ReadDir(-1)
}

func underlying(err error) error {
	if pe, ok := err.(*fs.PathError); ok {
		return pe.Err
	}
	return err
}

type eofReader struct{}

func (eofReader) ReadAt([]byte, int64) (int, error) { return 0, io.EOF }

type fileInfo struct {
	name string
	in   *Inode
}

func (fi fileInfo) Name() string { return fi.name }
func (fi fileInfo) Size() int64  { return fi.in.Size }
func (fi fileInfo) Mode() fs.FileMode {
	return (&fstree.Inode{Type: fi.in.Type, Perm: fi.in.Mode & 0o7777}).FileMode()
}
func (fi fileInfo) ModTime() time.Time         { return fi.in.ModTime }
func (fi fileInfo) IsDir() bool                { return fi.in.Type == fstree.TypeDir }
func (fi fileInfo) Sys() any                   { return fi.in }
func (fi fileInfo) Type() fs.FileMode          { return fi.Mode().Type() }
func (fi fileInfo) Info() (fs.FileInfo, error) { return fi, nil }

type file struct {
	*io.SectionReader
	fi fileInfo
}

func (f *file) Stat() (fs.FileInfo, error) { return f.fi, nil }
func (f *file) Close() error               { return nil }

type dirFile struct {
	fsys *FS
	fi   fileInfo
	ents []fs.DirEntry // nil until the first ReadDir
	read bool
}

func (d *dirFile) Stat() (fs.FileInfo, error) { return d.fi, nil }
func (d *dirFile) Close() error               { return nil }
func (d *dirFile) Read([]byte) (int, error) {
	return 0, &fs.PathError{Op: "read", Path: d.fi.name, Err: fs.ErrInvalid}
}

func (d *dirFile) ReadDir(n int) ([]fs.DirEntry, error) {
	if !d.read {
		raw, err := d.fsys.Entries(d.fi.in)
		if err != nil {
			return nil, err
		}
		for _, e := range raw {
			if e.Name == "." || e.Name == ".." {
				continue
			}
			in, err := d.fsys.Inode(e.Nid)
			if err != nil {
				return nil, err
			}
			d.ents = append(d.ents, fileInfo{name: e.Name, in: in})
		}
		d.read = true
	}
	if n <= 0 {
		out := d.ents
		d.ents = nil
		return out, nil
	}
	if len(d.ents) == 0 {
		return nil, io.EOF
	}
	k := min(n, len(d.ents))
	out := d.ents[:k]
	d.ents = d.ents[k:]
	return out, nil
}
