package erofs

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"sort"
	"strings"
	"time"

	"github.com/enclave-storage/enclave-storage/fstree"
)

// Errors returned by the reader.
var (
	ErrNotEROFS    = errors.New("not an EROFS image (bad magic)")
	ErrCorrupt     = errors.New("corrupt EROFS image")
	ErrUnsupported = errors.New("unsupported EROFS feature")
	ErrNotExist    = fstree.ErrNotExist
	ErrNotDir      = fstree.ErrNotDir
)

// Superblock is the decoded EROFS superblock.
type Superblock struct {
	Checksum        uint32
	FeatureCompat   uint32
	FeatureIncompat uint32
	BlockBits       uint8
	RootNid         uint64
	Inodes          uint64
	BuildTime       time.Time // epoch + fixed nanoseconds: the time of compact inodes
	Blocks          uint64
	MetaBlkAddr     uint32
	XattrBlkAddr    uint32
	UUID            [16]byte
	VolumeName      string
}

// Inode is a decoded inode.
type Inode struct {
	Nid      uint64
	Extended bool   // 64-byte inode
	Layout   uint8  // data layout: 0 flat plain, 2 flat inline
	Mode     uint32 // unix st_mode
	Type     fstree.Type
	Nlink    uint32
	Size     int64
	UID, GID uint32
	ModTime  time.Time
	Major    uint32
	Minor    uint32
	Ino      uint32 // i_ino (32-bit stat compatibility)

	startBlk   uint64
	xattrStart int64 // byte offset of the xattr body
	xattrSize  int64
	dataStart  int64 // byte offset of inline data, when Layout is 2
}

// DirEntry is one decoded directory entry.
type DirEntry struct {
	Name     string
	Nid      uint64
	FileType uint8 // EROFS_FT_* from the dirent
}

// FS reads an EROFS image. Its methods are safe for concurrent use as long
// as the underlying io.ReaderAt is.
type FS struct {
	r    io.ReaderAt
	size int64
	sb   Superblock
	bs   int64
}

// maxDepth bounds path walks and tree walks over hostile images.
const maxDepth = 4096

// Open reads and checks the superblock of the size-byte image in r. Every
// later read is checked against size, so a hostile image cannot make the
// reader allocate more than the image holds.
func Open(r io.ReaderAt, size int64) (*FS, error) {
	var blk [superOffset + superSize]byte
	if size < int64(len(blk)) {
		return nil, fmt.Errorf("erofs: image of %d bytes: %w", size, ErrNotEROFS)
	}
	if _, err := r.ReadAt(blk[:], 0); err != nil {
		return nil, fmt.Errorf("erofs: read superblock: %w", err)
	}
	s := blk[superOffset:]
	if le.Uint32(s) != magic {
		return nil, ErrNotEROFS
	}
	sb := Superblock{
		Checksum:        le.Uint32(s[4:]),
		FeatureCompat:   le.Uint32(s[8:]),
		BlockBits:       s[12],
		RootNid:         uint64(le.Uint16(s[14:])),
		Inodes:          le.Uint64(s[16:]),
		Blocks:          uint64(le.Uint32(s[36:])),
		MetaBlkAddr:     le.Uint32(s[40:]),
		XattrBlkAddr:    le.Uint32(s[44:]),
		FeatureIncompat: le.Uint32(s[80:]),
		VolumeName:      strings.TrimRight(string(s[64:80]), "\x00"),
	}
	copy(sb.UUID[:], s[48:64])
	sb.BuildTime = time.Unix(int64(le.Uint64(s[24:])), int64(le.Uint32(s[32:])%1e9))
	if sb.BlockBits < 9 || sb.BlockBits > 16 {
		return nil, fmt.Errorf("erofs: block size 2^%d: %w", sb.BlockBits, ErrCorrupt)
	}
	if s[13] != 0 {
		return nil, fmt.Errorf("erofs: superblock extension slots: %w", ErrUnsupported)
	}
	// Only features that change how uncompressed, flat images are read
	// matter here; compression-only flags are harmless for us until a
	// compressed inode is met.
	const known = 0x1 | 0x2 | 0x4 | 0x10 | 0x20
	if sb.FeatureIncompat&^known != 0 {
		return nil, fmt.Errorf("erofs: incompatible features %#x: %w", sb.FeatureIncompat&^known, ErrUnsupported)
	}
	fsys := &FS{r: r, size: size, sb: sb, bs: 1 << sb.BlockBits}
	if sb.FeatureCompat&featureCompatSBChecksum != 0 {
		n := fsys.bs - superOffset
		if n <= 0 || superOffset+n > size {
			return nil, fmt.Errorf("erofs: superblock checksum range: %w", ErrCorrupt)
		}
		buf := make([]byte, n)
		if err := fsys.readAt(buf, superOffset); err != nil {
			return nil, err
		}
		le.PutUint32(buf[4:], 0)
		if got := sbChecksum(buf); got != sb.Checksum {
			return nil, fmt.Errorf("erofs: superblock checksum %#08x, computed %#08x: %w", sb.Checksum, got, ErrCorrupt)
		}
	}
	return fsys, nil
}

// Superblock returns the decoded superblock.
func (f *FS) Superblock() Superblock { return f.sb }

func (f *FS) readAt(p []byte, off int64) error {
	if off < 0 || off > f.size || int64(len(p)) > f.size-off {
		return fmt.Errorf("erofs: read of %d bytes at %d beyond image end %d: %w", len(p), off, f.size, ErrCorrupt)
	}
	if _, err := f.r.ReadAt(p, off); err != nil && !(err == io.EOF && off+int64(len(p)) == f.size) {
		return fmt.Errorf("erofs: read at %d: %w", off, err)
	}
	return nil
}

// Inode reads the inode nid.
func (f *FS) Inode(nid uint64) (*Inode, error) {
	if nid > uint64(f.size)/32 {
		return nil, fmt.Errorf("erofs: nid %d beyond image: %w", nid, ErrCorrupt)
	}
	pos := int64(f.sb.MetaBlkAddr)*f.bs + int64(nid)*32
	var b [extendedSize]byte
	if err := f.readAt(b[:compactSize], pos); err != nil {
		return nil, fmt.Errorf("erofs: inode %d: %w", nid, err)
	}
	format := le.Uint16(b[0:])
	in := &Inode{Nid: nid, Extended: format&1 != 0, Layout: uint8(format>>1) & 7}
	if format&^0x1f != 0 {
		return nil, fmt.Errorf("erofs: inode %d: format %#x: %w", nid, format, ErrUnsupported)
	}
	icount := int64(le.Uint16(b[2:]))
	in.Mode = uint32(le.Uint16(b[4:]))
	isize := int64(compactSize)
	var iu uint32
	if in.Extended {
		isize = extendedSize
		if err := f.readAt(b[compactSize:], pos+compactSize); err != nil {
			return nil, fmt.Errorf("erofs: inode %d: %w", nid, err)
		}
		in.Size = int64(le.Uint64(b[8:]))
		iu = le.Uint32(b[16:])
		in.Ino = le.Uint32(b[20:])
		in.UID = le.Uint32(b[24:])
		in.GID = le.Uint32(b[28:])
		in.ModTime = time.Unix(int64(le.Uint64(b[32:])), int64(le.Uint32(b[40:])%1e9))
		in.Nlink = le.Uint32(b[44:])
	} else {
		if format&(1<<4) != 0 && in.Mode&fstree.S_IFMT != fstree.S_IFDIR {
			in.Nlink = 1
		} else {
			in.Nlink = uint32(le.Uint16(b[6:]))
		}
		in.Size = int64(le.Uint32(b[8:]))
		in.ModTime = f.sb.BuildTime.Add(time.Duration(le.Uint32(b[12:])) * time.Second)
		iu = le.Uint32(b[16:])
		in.Ino = le.Uint32(b[20:])
		in.UID = uint32(le.Uint16(b[24:]))
		in.GID = uint32(le.Uint16(b[26:]))
	}
	if in.Size < 0 {
		return nil, fmt.Errorf("erofs: inode %d: size %d: %w", nid, in.Size, ErrCorrupt)
	}
	in.Type = fstree.TypeFromUnix(in.Mode)
	switch in.Type {
	case 0:
		return nil, fmt.Errorf("erofs: inode %d: mode %#o: %w", nid, in.Mode, ErrCorrupt)
	case fstree.TypeCharDevice, fstree.TypeBlockDevice:
		in.Major, in.Minor = decodeDev(iu)
	default:
		in.startBlk = uint64(iu)
	}
	if icount > 0 {
		in.xattrStart = pos + isize
		in.xattrSize = ibodyHeader + 4*(icount-1)
	}
	switch in.Layout {
	case layoutFlatPlain:
	case layoutFlatInline:
		in.dataStart = pos + isize + in.xattrSize
		tail := in.Size % f.bs
		if tail == 0 && in.Size > 0 {
			tail = f.bs
		}
		if in.dataStart%f.bs+tail > f.bs {
			return nil, fmt.Errorf("erofs: inode %d: inline data crosses a block: %w", nid, ErrCorrupt)
		}
	default:
		return nil, fmt.Errorf("erofs: inode %d: data layout %d: %w", nid, in.Layout, ErrUnsupported)
	}
	return in, nil
}

// Data returns a reader over the inode's data (file content, symlink
// target, raw directory blocks).
func (f *FS) Data(in *Inode) (*io.SectionReader, error) {
	d := &dataReader{f: f, in: in}
	if in.Size > f.size {
		return nil, fmt.Errorf("erofs: inode %d: size %d larger than image: %w", in.Nid, in.Size, ErrCorrupt)
	}
	d.plain = in.Size
	if in.Layout == layoutFlatInline {
		d.plain = (in.Size - 1) / f.bs * f.bs
	}
	if d.plain > 0 && int64(in.startBlk)*f.bs+d.plain > f.size {
		return nil, fmt.Errorf("erofs: inode %d: data blocks beyond image: %w", in.Nid, ErrCorrupt)
	}
	return io.NewSectionReader(d, 0, in.Size), nil
}

type dataReader struct {
	f     *FS
	in    *Inode
	plain int64 // bytes stored in data blocks; the rest is inline
}

func (d *dataReader) ReadAt(p []byte, off int64) (int, error) {
	if off >= d.in.Size {
		return 0, io.EOF
	}
	n := 0
	for len(p) > 0 && off < d.in.Size {
		var pos, avail int64
		if off < d.plain {
			pos, avail = int64(d.in.startBlk)*d.f.bs+off, d.plain-off
		} else {
			pos, avail = d.in.dataStart+(off-d.plain), d.in.Size-off
		}
		k := int(min(int64(len(p)), avail))
		if err := d.f.readAt(p[:k], pos); err != nil {
			return n, err
		}
		n += k
		p = p[k:]
		off += int64(k)
	}
	if len(p) > 0 {
		return n, io.EOF
	}
	return n, nil
}

// Entries returns the entries of directory inode in, "." and ".."
// included, in on-disk order.
func (f *FS) Entries(in *Inode) ([]DirEntry, error) {
	if in.Type != fstree.TypeDir {
		return nil, fmt.Errorf("erofs: inode %d: %w", in.Nid, ErrNotDir)
	}
	data, err := f.Data(in)
	if err != nil {
		return nil, err
	}
	var out []DirEntry
	blk := make([]byte, f.bs)
	for start := int64(0); start < in.Size; start += f.bs {
		n := min(f.bs, in.Size-start)
		b := blk[:n]
		if _, err := data.ReadAt(b, start); err != nil && err != io.EOF {
			return nil, err
		}
		if n < direntSize {
			return nil, fmt.Errorf("erofs: dir %d: block of %d bytes: %w", in.Nid, n, ErrCorrupt)
		}
		first := int64(le.Uint16(b[8:]))
		if first < direntSize || first%direntSize != 0 || first > n {
			return nil, fmt.Errorf("erofs: dir %d: first name offset %d: %w", in.Nid, first, ErrCorrupt)
		}
		count := first / direntSize
		for i := int64(0); i < count; i++ {
			d := b[i*direntSize:]
			nameoff := int64(le.Uint16(d[8:]))
			end := n
			if i+1 < count {
				end = int64(le.Uint16(d[direntSize+8:]))
			}
			if nameoff < first || end < nameoff || end > n {
				return nil, fmt.Errorf("erofs: dir %d: name offsets %d..%d: %w", in.Nid, nameoff, end, ErrCorrupt)
			}
			name := b[nameoff:end]
			if i+1 == count {
				if z := strings.IndexByte(string(name), 0); z >= 0 {
					name = name[:z]
				}
			}
			if len(name) == 0 || len(name) > maxNameLen {
				return nil, fmt.Errorf("erofs: dir %d: name of %d bytes: %w", in.Nid, len(name), ErrCorrupt)
			}
			out = append(out, DirEntry{Name: string(name), Nid: le.Uint64(d), FileType: d[10]})
		}
	}
	return out, nil
}

// lookupIn finds name in directory in.
func (f *FS) lookupIn(in *Inode, name string) (uint64, error) {
	ents, err := f.Entries(in)
	if err != nil {
		return 0, err
	}
	i := sort.Search(len(ents), func(i int) bool { return ents[i].Name >= name })
	if i < len(ents) && ents[i].Name == name {
		return ents[i].Nid, nil
	}
	for _, e := range ents { // tolerate unsorted directories
		if e.Name == name {
			return e.Nid, nil
		}
	}
	return 0, ErrNotExist
}

// Lookup returns the inode at path p (slash-separated, relative to the
// root; symlinks are not followed).
func (f *FS) Lookup(p string) (*Inode, error) {
	in, err := f.Inode(f.sb.RootNid)
	if err != nil {
		return nil, err
	}
	cp := fstree.Clean(p)
	if cp == "" {
		return in, nil
	}
	parts := strings.Split(cp, "/")
	if len(parts) > maxDepth {
		return nil, &fstree.PathError{Op: "lookup", Path: p, Err: ErrCorrupt}
	}
	for _, name := range parts {
		if in.Type != fstree.TypeDir {
			return nil, &fstree.PathError{Op: "lookup", Path: p, Err: ErrNotDir}
		}
		nid, err := f.lookupIn(in, name)
		if err != nil {
			return nil, &fstree.PathError{Op: "lookup", Path: p, Err: err}
		}
		if in, err = f.Inode(nid); err != nil {
			return nil, err
		}
	}
	return in, nil
}

// ReadFile returns the content of the regular file at p, a path as Open
// takes it (this makes FS an fs.ReadFileFS). Other non-directories read as
// empty, as with Open.
func (f *FS) ReadFile(p string) ([]byte, error) {
	if !validPath(p) {
		return nil, &fs.PathError{Op: "read", Path: p, Err: fs.ErrInvalid}
	}
	in, err := f.Lookup(p)
	if err != nil {
		return nil, err
	}
	switch in.Type {
	case fstree.TypeDir:
		return nil, &fstree.PathError{Op: "read", Path: p, Err: fstree.ErrInvalid}
	case fstree.TypeRegular:
	default:
		return []byte{}, nil // like Open: symlinks are not followed, devices have no body
	}
	r, err := f.Data(in)
	if err != nil {
		return nil, err
	}
	b := make([]byte, in.Size)
	if _, err := r.ReadAt(b, 0); err != nil && err != io.EOF {
		return nil, err
	}
	return b, nil
}

// Readlink returns the target of the symlink at p.
func (f *FS) Readlink(p string) (string, error) {
	in, err := f.Lookup(p)
	if err != nil {
		return "", err
	}
	if in.Type != fstree.TypeSymlink {
		return "", &fstree.PathError{Op: "readlink", Path: p, Err: fstree.ErrInvalid}
	}
	if in.Size > maxSymlink {
		return "", fmt.Errorf("erofs: symlink %s of %d bytes: %w", p, in.Size, ErrCorrupt)
	}
	r, err := f.Data(in)
	if err != nil {
		return "", err
	}
	b := make([]byte, in.Size)
	if _, err := r.ReadAt(b, 0); err != nil && err != io.EOF {
		return "", err
	}
	return string(b), nil
}

const maxSymlink = 4096

// Xattrs returns the extended attributes of in by full name.
func (f *FS) Xattrs(in *Inode) (map[string][]byte, error) {
	if in.xattrSize == 0 {
		return nil, nil
	}
	body := make([]byte, in.xattrSize)
	if err := f.readAt(body, in.xattrStart); err != nil {
		return nil, err
	}
	out := make(map[string][]byte)
	shared := int64(body[4])
	pos := int64(ibodyHeader)
	if pos+4*shared > int64(len(body)) {
		return nil, fmt.Errorf("erofs: inode %d: %d shared xattrs: %w", in.Nid, shared, ErrCorrupt)
	}
	for i := int64(0); i < shared; i++ {
		id := int64(le.Uint32(body[pos:]))
		pos += 4
		if err := f.sharedXattr(out, int64(f.sb.XattrBlkAddr)*f.bs+id*4); err != nil {
			return nil, fmt.Errorf("erofs: inode %d: %w", in.Nid, err)
		}
	}
	for pos < int64(len(body)) {
		k, err := decodeXattr(out, body[pos:])
		if err != nil {
			return nil, fmt.Errorf("erofs: inode %d: %w", in.Nid, err)
		}
		pos += k
	}
	return out, nil
}

func (f *FS) sharedXattr(out map[string][]byte, off int64) error {
	var hdr [4]byte
	if err := f.readAt(hdr[:], off); err != nil {
		return err
	}
	n := 4 + int64(hdr[0]) + int64(le.Uint16(hdr[2:]))
	b := make([]byte, (n+3)&^3)
	if err := f.readAt(b[:n], off); err != nil {
		return err
	}
	_, err := decodeXattr(out, b)
	return err
}

// decodeXattr decodes one entry at the start of b and returns its padded
// length.
func decodeXattr(out map[string][]byte, b []byte) (int64, error) {
	if len(b) < 4 {
		return 0, fmt.Errorf("xattr entry header truncated: %w", ErrCorrupt)
	}
	nameLen, index, valLen := int(b[0]), b[1], int(le.Uint16(b[2:]))
	n := 4 + nameLen + valLen
	if n > len(b) {
		return 0, fmt.Errorf("xattr entry of %d bytes in %d: %w", n, len(b), ErrCorrupt)
	}
	if index&xattrLongPrefix != 0 {
		return 0, fmt.Errorf("long xattr name prefixes: %w", ErrUnsupported)
	}
	prefix, ok := prefixOf(index)
	if !ok {
		return 0, fmt.Errorf("xattr name index %d: %w", index, ErrUnsupported)
	}
	name := prefix + string(b[4:4+nameLen])
	out[name] = append([]byte{}, b[4+nameLen:n]...)
	return int64((n + 3) &^ 3), nil
}

// WalkFunc is called by FS.Walk with the path of each inode ("" for the
// root).
type WalkFunc func(p string, in *Inode) error

// Walk visits every entry of the image depth first, in on-disk directory
// order, skipping "." and "..". A directory reached twice (a cycle in a
// corrupt image) or nesting deeper than 4096 is an ErrCorrupt error.
func (f *FS) Walk(fn WalkFunc) error {
	root, err := f.Inode(f.sb.RootNid)
	if err != nil {
		return err
	}
	seen := map[uint64]bool{}
	return f.walk("", root, fn, seen, 0)
}

func (f *FS) walk(p string, in *Inode, fn WalkFunc, seen map[uint64]bool, depth int) error {
	if err := fn(p, in); err != nil {
		if err == fstree.SkipDir {
			return nil
		}
		return err
	}
	if in.Type != fstree.TypeDir {
		return nil
	}
	if seen[in.Nid] || depth > maxDepth {
		return fmt.Errorf("erofs: directory /%s (nid %d) reached twice or too deep: %w", p, in.Nid, ErrCorrupt)
	}
	seen[in.Nid] = true
	ents, err := f.Entries(in)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if e.Name == "." || e.Name == ".." {
			continue
		}
		if strings.Contains(e.Name, "/") {
			return fmt.Errorf("erofs: directory /%s: name %q: %w", p, e.Name, ErrCorrupt)
		}
		c, err := f.Inode(e.Nid)
		if err != nil {
			return err
		}
		cp := e.Name
		if p != "" {
			cp = p + "/" + e.Name
		}
		if err := f.walk(cp, c, fn, seen, depth+1); err != nil {
			return err
		}
	}
	return nil
}

// Tree reads the whole image into an fstree.Tree, with file content read
// lazily from the image (the FS's ReaderAt must stay open while the tree is
// used). Hard links become shared inodes. It lets callers compare an image
// with the tree it was built from (fstree.Diff).
func (f *FS) Tree() (*fstree.Tree, error) {
	t := fstree.New()
	byNid := make(map[uint64]*fstree.Inode)
	err := f.Walk(func(p string, in *Inode) error {
		if n := byNid[in.Nid]; n != nil && in.Type != fstree.TypeDir {
			return t.Insert(p, n)
		}
		n := &fstree.Inode{
			Type:    in.Type,
			Perm:    in.Mode & 0o7777,
			UID:     in.UID,
			GID:     in.GID,
			ModTime: in.ModTime,
			Major:   in.Major,
			Minor:   in.Minor,
		}
		x, err := f.Xattrs(in)
		if err != nil {
			return err
		}
		n.Xattrs = x
		switch in.Type {
		case fstree.TypeRegular:
			r, err := f.Data(in)
			if err != nil {
				return err
			}
			if in.Size > 0 {
				n.Content = fstree.SectionContent{R: r, Length: in.Size}
			}
		case fstree.TypeSymlink:
			if in.Size > maxSymlink {
				return fmt.Errorf("erofs: symlink /%s of %d bytes: %w", p, in.Size, ErrCorrupt)
			}
			r, err := f.Data(in)
			if err != nil {
				return err
			}
			b := make([]byte, in.Size)
			if _, err := r.ReadAt(b, 0); err != nil && err != io.EOF {
				return err
			}
			n.Target = string(b)
		}
		byNid[in.Nid] = n
		if p == "" {
			if n.Type != fstree.TypeDir {
				return fmt.Errorf("erofs: root inode %d is a %v: %w", in.Nid, n.Type, ErrCorrupt)
			}
		}
		return t.Insert(p, n)
	})
	if err != nil {
		return nil, err
	}
	return t, nil
}
