package erofs

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/enclave-storage/enclave-storage/fstree"
)

// Options tunes Write. The zero value is valid.
type Options struct {
	// BuildTime is recorded in the superblock and is the modification time
	// of every compact (32-byte) inode. Zero means: SOURCE_DATE_EPOCH
	// from the environment if set, else the newest modification time in the
	// tree (so the image depends on the tree alone).
	BuildTime time.Time
	// UUID is the volume UUID. Zero means derived from the image: a
	// SHA-256 over the metadata area and the CRC-32C of each MiB of data,
	// so equal trees get equal UUIDs and any change of content changes it.
	// Giving one (imgbuild can take it from the image's manifest digest)
	// saves even that.
	UUID [16]byte
	// VolumeName is an optional label of at most 16 bytes.
	VolumeName string
	// NoInline stores every file, directory and symlink in whole data
	// blocks instead of packing tails next to the inode
	// (EROFS_INODE_FLAT_PLAIN only).
	NoInline bool
	// Tee, if not nil, is given the image as it is written, so that a
	// consumer (imgbuild's verity tree) need not read it back.
	Tee Tee
}

// Tee receives an image as Write writes it: Begin with the image's size
// before any byte, then every block exactly once, at its offset, in
// chunks of whole blocks: blocks 1 and up in order, on a goroutine of
// Write's own so that it overlaps the writing, and block 0 (the
// superblock, which depends on all the others) last. An error from Begin
// or WriteAt fails Write.
type Tee interface {
	Begin(size int64) error
	io.WriterAt
}

// Stats describes a written image.
type Stats struct {
	Size      int64 // bytes written, a multiple of BlockSize
	Inodes    uint64
	MetaBytes int64 // size of the metadata area (inodes, xattrs, inline tails)
	UUID      [16]byte
	BuildTime time.Time
}

// WriteError is returned for a tree entry that cannot be written.
type WriteError struct {
	Path string // path in the tree, "" for the root
	Err  error
}

func (e *WriteError) Error() string { return "erofs: /" + e.Path + ": " + e.Err.Error() }
func (e *WriteError) Unwrap() error { return e.Err }

// Sentinel errors wrapped by WriteError.
var (
	ErrUnsupportedXattr = errors.New("extended attribute name has no EROFS prefix (user., trusted., security., system.posix_acl_*)")
	ErrTooLarge         = errors.New("value exceeds the on-disk format's limit")
	ErrBadName          = errors.New("invalid file name")
	ErrContentSize      = errors.New("file content does not match its declared size")
	ErrDirCycle         = fstree.ErrDirLinked
)

// node is one inode being laid out.
//
// One node exists per inode while the image is written: its fields are
// ordered to leave no padding (112 bytes), as images may hold millions.
type node struct {
	in     *fstree.Inode
	parent *node      // where it was first met, nil for the root
	name   string     // its name there (the tree's own string, not a copy)
	xattrs []byte     // encoded inline xattr body, nil if none
	dir    *dirLayout // directories only: most nodes are files and need none

	size    int64 // i_size
	inline  int   // bytes of tail packed after the inode
	nblocks int64 // whole blocks in the data area
	meta    int64 // byte offset of the inode

	nlink    uint32
	ino      uint32 // i_ino, 1-based creation order
	blkaddr  uint32
	extended bool
}

// dirLayout is a directory's entries and their blocks.
type dirLayout struct {
	entries []dirent // sorted, with "." and ".."
	blocks  []int    // index into entries of each directory block's first entry
}

type dirent struct {
	name string
	n    *node
}

// path returns the path where n was first met, for errors: built on
// demand rather than kept per node.
func (n *node) path() string {
	if n.parent == nil {
		return ""
	}
	if n.parent.parent == nil {
		return n.name
	}
	return n.parent.path() + "/" + n.name
}

func (n *node) isize() int {
	if n.extended {
		return extendedSize
	}
	return compactSize
}

func (n *node) nid(metaStart int64) uint64 { return uint64(n.meta-metaStart) / 32 }

// layout is a planned image.
type layout struct {
	nodes     []*node
	root      *node
	buildTime time.Time
	metaStart int64
	metaEnd   int64 // block aligned
	blocks    int64
}

// Write writes tree as an uncompressed EROFS image with 4096-byte blocks to
// w, from offset 0, sequentially. File content is streamed (memory is
// bounded by the number of entries, not their size); the superblock is
// written last. The same tree and options always give the same bytes.
func Write(ctx context.Context, w io.WriterAt, tree *fstree.Tree, opts Options) (Stats, error) {
	if len(opts.VolumeName) > 16 {
		return Stats{}, fmt.Errorf("erofs: volume name %q longer than 16 bytes: %w", opts.VolumeName, ErrTooLarge)
	}
	bt, err := buildTime(tree, opts.BuildTime)
	if err != nil {
		return Stats{}, err
	}
	l, err := plan(ctx, tree, bt, !opts.NoInline)
	if err != nil {
		return Stats{}, err
	}
	// Hashing every byte for the UUID costs CPU; skip it when given one.
	var h hash.Hash
	if opts.UUID == [16]byte{} {
		h = sha256.New()
	}
	var tee io.WriterAt
	if opts.Tee != nil {
		if err := opts.Tee.Begin(l.blocks * BlockSize); err != nil {
			return Stats{}, fmt.Errorf("erofs: tee: %w", err)
		}
		tee = opts.Tee
	}
	sw := newSeqWriter(w, BlockSize, h, l.metaEnd, tee)
	defer sw.close()
	if err := l.writeMeta(ctx, sw); err != nil {
		return Stats{}, err
	}
	if err := l.writeData(ctx, sw); err != nil {
		return Stats{}, err
	}
	if err := sw.close(); err != nil {
		return Stats{}, err
	}
	if sw.off != l.blocks*BlockSize {
		return Stats{}, fmt.Errorf("erofs: internal error: wrote %d bytes, planned %d", sw.off, l.blocks*BlockSize)
	}
	uuid := opts.UUID
	if uuid == [16]byte{} {
		fmt.Fprintf(h, "erofs build_time=%d.%09d volume=%q", bt.Unix(), bt.Nanosecond(), opts.VolumeName)
		copy(uuid[:], h.Sum(nil))
		uuid[6] = uuid[6]&0x0f | 0x80 // RFC 9562 version 8 (custom)
		uuid[8] = uuid[8]&0x3f | 0x80 // RFC 9562 variant
	}
	sb := l.superblock(uuid, opts.VolumeName)
	if _, err := w.WriteAt(sb, 0); err != nil {
		return Stats{}, fmt.Errorf("erofs: write superblock: %w", err)
	}
	if opts.Tee != nil {
		if _, err := opts.Tee.WriteAt(sb, 0); err != nil {
			return Stats{}, fmt.Errorf("erofs: tee: superblock: %w", err)
		}
	}
	return Stats{
		Size:      l.blocks * BlockSize,
		Inodes:    uint64(len(l.nodes)),
		MetaBytes: l.metaEnd - l.metaStart,
		UUID:      uuid,
		BuildTime: bt,
	}, nil
}

// buildTime resolves Options.BuildTime.
func buildTime(tree *fstree.Tree, t time.Time) (time.Time, error) {
	if !t.IsZero() {
		return t, nil
	}
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		sec, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return time.Time{}, fmt.Errorf("erofs: SOURCE_DATE_EPOCH=%q: %w", s, err)
		}
		return time.Unix(sec, 0), nil
	}
	var newest time.Time
	err := tree.Walk(func(p string, n *fstree.Inode) error {
		if n.ModTime.After(newest) {
			newest = n.ModTime
		}
		return nil
	})
	if err != nil {
		return time.Time{}, fmt.Errorf("erofs: %w", err)
	}
	if newest.IsZero() {
		newest = time.Unix(0, 0)
	}
	return newest, nil
}

// unixTime returns t's seconds and nanoseconds, the zero time as the epoch.
func unixTime(t time.Time) (int64, uint32) {
	if t.IsZero() {
		return 0, 0
	}
	return t.Unix(), uint32(t.Nanosecond())
}

// plan assigns every inode its place: inodes in depth-first sorted order
// (root first, at nid 1, so it fits the superblock's 16-bit field),
// then the data blocks in the same order.
func plan(ctx context.Context, tree *fstree.Tree, bt time.Time, inline bool) (*layout, error) {
	l := &layout{buildTime: bt, metaStart: BlockSize}
	links := tree.Links()
	nodes := make(map[*fstree.Inode]*node)
	btSec, btNsec := unixTime(bt)

	var visit func(p, name string, in *fstree.Inode, parent *node) (*node, error)
	visit = func(p, name string, in *fstree.Inode, parent *node) (*node, error) {
		if n := nodes[in]; n != nil {
			if in.Type == fstree.TypeDir {
				return nil, &WriteError{p, ErrDirCycle}
			}
			return n, nil
		}
		if len(l.nodes)%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		n := &node{in: in, parent: parent, name: name, nlink: links[in], ino: uint32(len(l.nodes) + 1)}
		if n.nlink > 1 || in.Type == fstree.TypeDir {
			// Only these can be met again; keeping the others out of
			// the map saves memory on images of a million files.
			nodes[in] = n
		}
		l.nodes = append(l.nodes, n)
		if err := n.prepare(btSec, btNsec); err != nil {
			return nil, err
		}
		if in.Type != fstree.TypeDir {
			return n, nil
		}
		if parent == nil {
			parent = n
		}
		ents := in.Entries()
		n.dir = &dirLayout{entries: make([]dirent, 0, len(ents)+2)}
		n.dir.entries = append(n.dir.entries, dirent{".", n}, dirent{"..", parent})
		for _, e := range ents {
			if e.Name == "" || e.Name == "." || e.Name == ".." || len(e.Name) > maxNameLen || strings.ContainsAny(e.Name, "/\x00") {
				return nil, &WriteError{p, fmt.Errorf("%w: %q", ErrBadName, e.Name)}
			}
			cp := e.Name
			if p != "" {
				cp = p + "/" + e.Name
			}
			c, err := visit(cp, e.Name, e.Inode, n)
			if err != nil {
				return nil, err
			}
			n.dir.entries = append(n.dir.entries, dirent{e.Name, c})
		}
		sort.Slice(n.dir.entries, func(i, j int) bool { return n.dir.entries[i].name < n.dir.entries[j].name })
		n.packDir()
		return n, nil
	}
	root, err := visit("", "", tree.Root(), nil)
	if err != nil {
		return nil, err
	}
	l.root = root

	// Inodes, xattrs and inline tails, 32-byte aligned, never straddling a
	// block when they fit in one (inline data must not cross a block).
	// The root goes first but not at nid 0: the kernel reports nid as the
	// inode number and readdir hides entries with inode number 0.
	off := l.metaStart + 32
	for _, n := range l.nodes {
		n.decideInline(inline)
		region := int64(n.isize() + len(n.xattrs) + n.inline)
		off = (off + 31) &^ 31
		if (region <= BlockSize || n.isize() > compactSize) && off%BlockSize+min(region, BlockSize) > BlockSize {
			off = (off + BlockSize - 1) &^ (BlockSize - 1)
		}
		n.meta = off
		off += region
	}
	l.metaEnd = (off + BlockSize - 1) &^ (BlockSize - 1)
	blk := l.metaEnd / BlockSize
	if blk > math.MaxUint32 {
		return nil, fmt.Errorf("erofs: metadata area of %d bytes: %w", l.metaEnd, ErrTooLarge)
	}
	for _, n := range l.nodes {
		if n.nblocks > 0 {
			n.blkaddr = uint32(blk)
			blk += n.nblocks
			if blk > math.MaxUint32 {
				return nil, &WriteError{n.path(), fmt.Errorf("image exceeds 2^32 blocks: %w", ErrTooLarge)}
			}
		}
	}
	l.blocks = blk
	return l, nil
}

// prepare checks n's metadata and computes its size, xattrs and inode form.
func (n *node) prepare(btSec int64, btNsec uint32) error {
	in := n.in
	switch in.Type {
	case fstree.TypeRegular:
		n.size = in.Size()
		if n.size < 0 {
			return &WriteError{n.path(), fmt.Errorf("negative size %d: %w", n.size, ErrContentSize)}
		}
	case fstree.TypeSymlink:
		n.size = int64(len(in.Target))
		if n.size == 0 || n.size >= BlockSize {
			return &WriteError{n.path(), fmt.Errorf("symlink target of %d bytes: %w", n.size, ErrTooLarge)}
		}
	case fstree.TypeCharDevice, fstree.TypeBlockDevice:
		if in.Major > 0xfff || in.Minor > 0xfffff {
			return &WriteError{n.path(), fmt.Errorf("device %d:%d: %w", in.Major, in.Minor, ErrTooLarge)}
		}
	case fstree.TypeDir, fstree.TypeFIFO, fstree.TypeSocket:
	default:
		return &WriteError{n.path(), fmt.Errorf("unknown inode type %v", in.Type)}
	}
	xb, err := encodeXattrs(in.Xattrs)
	if err != nil {
		return &WriteError{n.path(), err}
	}
	n.xattrs = xb
	sec, nsec := unixTime(in.ModTime)
	n.extended = in.UID > math.MaxUint16 || in.GID > math.MaxUint16 ||
		n.nlink > math.MaxUint16 || n.size > math.MaxUint32 ||
		sec != btSec || nsec != btNsec
	return nil
}

// encodeXattrs builds an inline xattr body (ibody header and entries sorted
// by index and name), or nil when there are none.
func encodeXattrs(x map[string][]byte) ([]byte, error) {
	if len(x) == 0 {
		return nil, nil
	}
	type ent struct {
		index  uint8
		suffix string
		value  []byte
	}
	ents := make([]ent, 0, len(x))
	for name, v := range x {
		e := ent{value: v}
		for _, p := range xattrPrefixes {
			if p.index == xattrACLAccess || p.index == xattrACLDefault {
				if name == p.prefix {
					e.index = p.index
				}
			} else if strings.HasPrefix(name, p.prefix) && len(name) > len(p.prefix) {
				e.index, e.suffix = p.index, name[len(p.prefix):]
			}
		}
		if e.index == 0 {
			return nil, fmt.Errorf("xattr %q: %w", name, ErrUnsupportedXattr)
		}
		if len(e.suffix) > maxNameLen || len(v) > maxXattrValueLen {
			return nil, fmt.Errorf("xattr %q (%d-byte value): %w", name, len(v), ErrTooLarge)
		}
		ents = append(ents, e)
	}
	sort.Slice(ents, func(i, j int) bool {
		if ents[i].index != ents[j].index {
			return ents[i].index < ents[j].index
		}
		return ents[i].suffix < ents[j].suffix
	})
	b := make([]byte, ibodyHeader, 256)
	for _, e := range ents {
		b = append(b, uint8(len(e.suffix)), e.index, 0, 0)
		le.PutUint16(b[len(b)-2:], uint16(len(e.value)))
		b = append(b, e.suffix...)
		b = append(b, e.value...)
		for len(b)%4 != 0 {
			b = append(b, 0)
		}
	}
	if (len(b)-ibodyHeader)/4+1 > maxXattrIcount {
		return nil, fmt.Errorf("%d bytes of xattrs: %w", len(b), ErrTooLarge)
	}
	return b, nil
}

// packDir splits the sorted entries into directory blocks: each block holds
// its dirents, then their names, and is at most BlockSize bytes. The last
// block is only as long as its content, which gives the directory's size.
func (n *node) packDir() {
	used := 0
	for i, e := range n.dir.entries {
		need := direntSize + len(e.name)
		if i == 0 || used+need > BlockSize {
			if i > 0 {
				n.size += BlockSize
			}
			n.dir.blocks = append(n.dir.blocks, i)
			used = 0
		}
		used += need
	}
	n.size += int64(used)
}

// decideInline picks FLAT_INLINE when the data's tail fits in the block
// that holds the inode, FLAT_PLAIN otherwise.
func (n *node) decideInline(allow bool) {
	tail := int(n.size % BlockSize)
	full := n.size / BlockSize
	if allow && tail > 0 && n.isize()+len(n.xattrs)+tail <= BlockSize {
		n.inline, n.nblocks = tail, full
		return
	}
	n.inline = 0
	n.nblocks = (n.size + BlockSize - 1) / BlockSize
}

func fileType(t fstree.Type) uint8 {
	switch t {
	case fstree.TypeRegular:
		return ftRegular
	case fstree.TypeDir:
		return ftDir
	case fstree.TypeCharDevice:
		return ftChrdev
	case fstree.TypeBlockDevice:
		return ftBlkdev
	case fstree.TypeFIFO:
		return ftFIFO
	case fstree.TypeSocket:
		return ftSocket
	case fstree.TypeSymlink:
		return ftSymlink
	}
	return ftUnknown
}

// inode encodes n's on-disk inode.
func (l *layout) inode(n *node) []byte {
	in := n.in
	format := uint16(layoutFlatPlain) << 1
	if n.inline > 0 {
		format = uint16(layoutFlatInline) << 1
	}
	var icount uint16
	if len(n.xattrs) > 0 {
		icount = uint16((len(n.xattrs)-ibodyHeader)/4 + 1)
	}
	var iu uint32
	switch in.Type {
	case fstree.TypeCharDevice, fstree.TypeBlockDevice:
		iu = encodeDev(in.Major, in.Minor)
	case fstree.TypeRegular, fstree.TypeDir, fstree.TypeSymlink:
		iu = n.blkaddr
	}
	mode := uint16(in.Mode())
	if !n.extended {
		b := make([]byte, compactSize)
		le.PutUint16(b[0:], format)
		le.PutUint16(b[2:], icount)
		le.PutUint16(b[4:], mode)
		le.PutUint16(b[6:], uint16(n.nlink))
		le.PutUint32(b[8:], uint32(n.size))
		// b[12:16] i_mtime stays 0: the inode's time is the build time.
		le.PutUint32(b[16:], iu)
		le.PutUint32(b[20:], n.ino)
		le.PutUint16(b[24:], uint16(in.UID))
		le.PutUint16(b[26:], uint16(in.GID))
		return b
	}
	b := make([]byte, extendedSize)
	le.PutUint16(b[0:], format|1)
	le.PutUint16(b[2:], icount)
	le.PutUint16(b[4:], mode)
	le.PutUint64(b[8:], uint64(n.size))
	le.PutUint32(b[16:], iu)
	le.PutUint32(b[20:], n.ino)
	le.PutUint32(b[24:], in.UID)
	le.PutUint32(b[28:], in.GID)
	sec, nsec := unixTime(in.ModTime)
	le.PutUint64(b[32:], uint64(sec))
	le.PutUint32(b[40:], nsec)
	le.PutUint32(b[44:], n.nlink)
	return b
}

// dirBlock encodes directory block i of n (only its used bytes).
func (l *layout) dirBlock(n *node, i int) []byte {
	start := n.dir.blocks[i]
	end := len(n.dir.entries)
	if i+1 < len(n.dir.blocks) {
		end = n.dir.blocks[i+1]
	}
	ents := n.dir.entries[start:end]
	b := make([]byte, direntSize*len(ents), BlockSize)
	for j, e := range ents {
		d := b[j*direntSize:]
		le.PutUint64(d[0:], e.n.nid(l.metaStart))
		le.PutUint16(d[8:], uint16(len(b)))
		d[10] = fileType(e.n.in.Type)
		b = append(b, e.name...)
	}
	return b
}

// writeMeta writes the metadata area: inodes, xattrs and inline tails.
func (l *layout) writeMeta(ctx context.Context, w *seqWriter) error {
	for i, n := range l.nodes {
		if i%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		if err := w.zeroTo(n.meta); err != nil {
			return err
		}
		w.write(l.inode(n))
		w.write(n.xattrs)
		if n.inline == 0 {
			continue
		}
		switch n.in.Type {
		case fstree.TypeSymlink:
			w.write([]byte(n.in.Target))
		case fstree.TypeDir:
			w.write(l.dirBlock(n, len(n.dir.blocks)-1))
		case fstree.TypeRegular:
			if err := n.writeTail(w); err != nil {
				return err
			}
		}
		if err := w.err; err != nil {
			return err
		}
	}
	return w.zeroTo(l.metaEnd)
}

// writeTail copies the last n.inline bytes of a regular file's content and
// checks that the content ends there.
func (n *node) writeTail(w *seqWriter) error {
	r, err := n.in.Content.Open()
	if err != nil {
		return &WriteError{n.path(), err}
	}
	defer r.Close()
	skip := n.nblocks * BlockSize
	if skip > 0 {
		if s, ok := r.(io.Seeker); ok {
			_, err = s.Seek(skip, io.SeekStart)
		} else {
			_, err = io.CopyN(io.Discard, r, skip)
		}
		if err != nil {
			return &WriteError{n.path(), fmt.Errorf("skip to tail: %w", err)}
		}
	}
	var buf [BlockSize + 1]byte
	got, err := io.ReadFull(r, buf[:n.inline+1])
	if got != n.inline || err != io.ErrUnexpectedEOF {
		if err == nil || err == io.ErrUnexpectedEOF || err == io.EOF {
			err = fmt.Errorf("%w: declared %d bytes", ErrContentSize, n.size)
		}
		return &WriteError{n.path(), err}
	}
	w.write(buf[:n.inline])
	return w.err
}

// writeData writes the data blocks of every inode that has some.
func (l *layout) writeData(ctx context.Context, w *seqWriter) error {
	for _, n := range l.nodes {
		if n.nblocks == 0 {
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := w.zeroTo(int64(n.blkaddr) * BlockSize); err != nil {
			return err
		}
		switch n.in.Type {
		case fstree.TypeSymlink:
			w.write([]byte(n.in.Target))
		case fstree.TypeDir:
			for i := int64(0); i < n.nblocks; i++ {
				b := l.dirBlock(n, int(i))
				w.write(b)
				w.write(make([]byte, BlockSize-len(b)))
			}
		case fstree.TypeRegular:
			if err := n.writeContent(ctx, w); err != nil {
				return err
			}
		}
		if err := w.zeroTo(int64(n.blkaddr)*BlockSize + n.nblocks*BlockSize); err != nil {
			return err
		}
	}
	return w.zeroTo(l.blocks * BlockSize)
}

// writeContent copies the part of a file's content stored in data blocks.
func (n *node) writeContent(ctx context.Context, w *seqWriter) error {
	r, err := n.in.Content.Open()
	if err != nil {
		return &WriteError{n.path(), err}
	}
	defer r.Close()
	want := n.size
	if n.inline > 0 {
		want = n.nblocks * BlockSize
	}
	got, err := w.copyFrom(ctx, r, want)
	if err != nil {
		return &WriteError{n.path(), err}
	}
	if got != want {
		return &WriteError{n.path(), fmt.Errorf("%w: declared %d bytes, got %d", ErrContentSize, n.size, got)}
	}
	if n.inline == 0 {
		// The whole content is stored here: it must end now.
		var one [1]byte
		if k, _ := io.ReadFull(r, one[:]); k != 0 {
			return &WriteError{n.path(), fmt.Errorf("%w: longer than declared %d bytes", ErrContentSize, n.size)}
		}
	}
	return nil
}

// superblock encodes block 0: 1024 zero bytes, the superblock, zeros.
func (l *layout) superblock(uuid [16]byte, volume string) []byte {
	b := make([]byte, BlockSize)
	s := b[superOffset:]
	le.PutUint32(s[0:], magic)
	le.PutUint32(s[8:], featureCompatSBChecksum|featureCompatMtime)
	s[12] = blkBits
	le.PutUint16(s[14:], uint16(l.root.nid(l.metaStart)))
	le.PutUint64(s[16:], uint64(len(l.nodes)))
	sec, nsec := unixTime(l.buildTime)
	le.PutUint64(s[24:], uint64(sec))
	le.PutUint32(s[32:], nsec)
	le.PutUint32(s[36:], uint32(l.blocks))
	le.PutUint32(s[40:], uint32(l.metaStart/BlockSize))
	copy(s[48:64], uuid[:])
	copy(s[64:80], volume)
	le.PutUint32(s[4:], sbChecksum(s))
	return b
}

// seqWriter writes sequentially through an io.WriterAt with a buffer,
// hashing everything it writes. Full buffers are handed to two goroutines,
// one hashing and one writing (and a third for the tee, if any), so
// reading content, hashing and writing overlap. The first error sticks; close must be called to stop the
// goroutines and collect their error.
type seqWriter struct {
	off int64 // offset of the next byte (including buffered ones)
	buf []byte
	err error

	free    chan []byte
	toHash  chan *chunk
	toWrite chan *chunk
	toTee   chan *chunk // nil without a tee
	wg      sync.WaitGroup
	mu      sync.Mutex
	werr    error // first error of the writer goroutine
	closed  bool
	hashing bool
}

type chunk struct {
	b       []byte
	off     int64
	pending atomic.Int32
}

const (
	writeBufSize = 1 << 20
	writeBufs    = 4
)

// newSeqWriter starts writing at off. If h is not nil, chunks starting
// before fullHashEnd are hashed whole and later ones (file data) only by
// their CRC-32C, which is much cheaper and still changes with any change of
// content.
// Every chunk is also written to tee, if not nil, on a goroutine of its
// own; chunks are whole multiples of BlockSize when off and every flush
// are (flush is called on full buffers, and by close at the image's
// block-aligned end).
func newSeqWriter(w io.WriterAt, off int64, h hash.Hash, fullHashEnd int64, tee io.WriterAt) *seqWriter {
	s := &seqWriter{
		off:     off,
		free:    make(chan []byte, writeBufs),
		toHash:  make(chan *chunk, writeBufs),
		toWrite: make(chan *chunk, writeBufs),
	}
	for i := 0; i < writeBufs-1; i++ {
		s.free <- make([]byte, 0, writeBufSize)
	}
	s.buf = make([]byte, 0, writeBufSize)
	release := func(c *chunk) {
		if c.pending.Add(-1) == 0 {
			s.free <- c.b[:0]
		}
	}
	s.wg.Add(1)
	if h != nil {
		s.hashing = true
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			for c := range s.toHash {
				if c.off < fullHashEnd {
					h.Write(c.b)
				} else {
					var sum [4]byte
					le.PutUint32(sum[:], crc32.Checksum(c.b, castagnoli))
					h.Write(sum[:])
				}
				release(c)
			}
		}()
	}
	writeTo := func(ch chan *chunk, w io.WriterAt, what string) {
		defer s.wg.Done()
		for c := range ch {
			s.mu.Lock()
			failed := s.werr != nil
			s.mu.Unlock()
			if !failed {
				if _, err := w.WriteAt(c.b, c.off); err != nil {
					s.mu.Lock()
					if s.werr == nil {
						s.werr = fmt.Errorf("erofs: %s at offset %d: %w", what, c.off, err)
					}
					s.mu.Unlock()
				}
			}
			release(c)
		}
	}
	go writeTo(s.toWrite, w, "write")
	if tee != nil {
		s.toTee = make(chan *chunk, writeBufs)
		s.wg.Add(1)
		go writeTo(s.toTee, tee, "tee")
	}
	return s
}

// close flushes, waits for the goroutines and returns the first error.
func (s *seqWriter) close() error {
	if s.closed {
		return s.err
	}
	s.flush()
	s.closed = true
	close(s.toHash)
	close(s.toWrite)
	if s.toTee != nil {
		close(s.toTee)
	}
	s.wg.Wait()
	if s.err == nil {
		s.err = s.werr
	}
	return s.err
}

func (s *seqWriter) write(p []byte) {
	if s.err != nil {
		return
	}
	for len(p) > 0 {
		k := copy(s.buf[len(s.buf):cap(s.buf)], p)
		s.buf = s.buf[:len(s.buf)+k]
		s.off += int64(k)
		p = p[k:]
		if len(s.buf) == cap(s.buf) {
			if s.flush() != nil {
				return
			}
		}
	}
}

var zeroBlock [BlockSize]byte

func (s *seqWriter) zeroTo(off int64) error {
	if off < s.off {
		return fmt.Errorf("erofs: internal error: layout overlaps at offset %d (at %d)", off, s.off)
	}
	for s.off < off && s.err == nil {
		s.write(zeroBlock[:min(int64(BlockSize), off-s.off)])
	}
	return s.err
}

func (s *seqWriter) flush() error {
	if s.err != nil || len(s.buf) == 0 {
		return s.err
	}
	s.mu.Lock()
	s.err = s.werr
	s.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	c := &chunk{b: s.buf, off: s.off - int64(len(s.buf))}
	n := int32(1)
	if s.hashing {
		n++
	}
	if s.toTee != nil {
		n++
	}
	c.pending.Store(n)
	if s.hashing {
		s.toHash <- c
	}
	if s.toTee != nil {
		s.toTee <- c
	}
	s.toWrite <- c
	s.buf = <-s.free
	return nil
}

// copyFrom copies up to n bytes from r, reading straight into the buffer.
func (s *seqWriter) copyFrom(ctx context.Context, r io.Reader, n int64) (int64, error) {
	var done int64
	for done < n && s.err == nil {
		if len(s.buf) == cap(s.buf) {
			if err := s.flush(); err != nil {
				return done, err
			}
			if err := ctx.Err(); err != nil {
				return done, err
			}
		}
		room := s.buf[len(s.buf):min(int64(cap(s.buf)), int64(len(s.buf))+n-done)]
		k, err := r.Read(room)
		s.buf = s.buf[:len(s.buf)+k]
		s.off += int64(k)
		done += int64(k)
		if err == io.EOF {
			break
		}
		if err != nil {
			return done, err
		}
	}
	return done, s.err
}
