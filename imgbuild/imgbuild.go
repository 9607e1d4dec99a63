package imgbuild

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/enclave-storage/enclave-storage/eif"
	"github.com/enclave-storage/enclave-storage/erofs"
	"github.com/enclave-storage/enclave-storage/imgsrc"
	"github.com/enclave-storage/enclave-storage/layer"
	"github.com/enclave-storage/enclave-storage/verity"
	digest "github.com/opencontainers/go-digest"
)

// Output file names in Options.OutDir.
const (
	RootfsFile   = "rootfs.img"
	ManifestFile = "rootfs.verity.json"
	EIFFile      = "enclave.eif"
	PCRsFile     = "pcrs.json"
)

// Step names, as reported in Events and Result.Steps.
const (
	StepOpen     = "open"
	StepFlatten  = "flatten"
	StepWriteFS  = "erofs"
	StepVerity   = "verity"
	StepManifest = "manifest"
	StepEIF      = "eif"
)

// Options configure Build.
type Options struct {
	// Ref is the image reference (see imgsrc.ParseReference).
	Ref string
	// Platform is "os/arch[/variant]"; empty means imgsrc.DefaultPlatform.
	Platform string
	// OutDir receives the outputs; it is created if needed.
	OutDir string
	// SourceDateEpoch stamps the filesystem and the EIF. Zero means the
	// image's creation time, and if it has none, the newest mtime in the
	// tree (erofs's default).
	SourceDateEpoch time.Time
	// Salt is the verity salt; nil means derived from the image's
	// config digest (reproducible, distinct per image, and the same
	// whichever transport the image is read through: see DeriveSalt).
	Salt []byte
	// SpoolDir holds the temporary layer-content spool; empty means
	// OutDir, which is sure to have room for a file of the image's size.
	SpoolDir string
	// Limits bound what the image's layers may make the build hold or
	// write (zero fields: layer's defaults, 64 GiB and 10 million
	// entries); Policy says which of its privileges are kept (zero: device
	// nodes dropped, setuid and capabilities kept). See package layer.
	Limits layer.Limits
	Policy layer.Policy

	// EIF: built only when Kernel is set.
	Kernel string // kernel image file (bzImage)
	// Cmdline is the base kernel command line; the root hash is appended.
	Cmdline string
	// Init is the nbd-enclave executable for the application ramdisk;
	// required with Kernel.
	Init string
	// Bootstrap is the first (bootstrap) ramdisk file, such as Nitro's
	// init and nsm.ko cpio; empty means an empty cpio archive.
	Bootstrap string
	// EnclaveConfig is a JSON file of nbd-enclave settings (parent, key,
	// exports...) to put in the application ramdisk; its "app" field is
	// filled from the image config when absent. Empty means {"app": ...}.
	EnclaveConfig string
	// KernelModules is a kernel's module tree (/lib/modules/KVER, or a
	// root holding one) to take modules from into the bootstrap ramdisk;
	// empty for a kernel with everything built in. KernelModuleNames
	// lists them (nil: kmod.DefaultNames).
	KernelModules     string
	KernelModuleNames []string

	// Progress, if set, is called as steps start and finish.
	Progress func(Event)
}

// Event reports a step starting (Done false, empty Detail), progressing
// (Done false, Detail saying how far, such as which layer) or finishing
// (Done true, with its Elapsed time and a short Detail).
type Event struct {
	Step    string
	Index   int // 1-based index of the step
	Total   int // number of steps in this build
	Done    bool
	Elapsed time.Duration
	Detail  string
}

// StepTime is how long one step took.
type StepTime struct {
	Step    string        `json:"step"`
	Elapsed time.Duration `json:"elapsed_ns"`
}

// Result describes a finished build.
type Result struct {
	Manifest Manifest
	// Paths of the outputs; EIF and PCRs are empty without a kernel.
	Rootfs, ManifestPath, EIF, PCRs string
	PCRValues                       *eif.PCRs
	// Modules lists the kernel modules the EIF carries, if any.
	Modules *ModuleSet
	Steps   []StepTime

	// KeyPolicy is kms-key-policy.json's path (see KeyPolicy); empty
	// without a kernel.
	KeyPolicy string
}

// Manifest is rootfs.verity.json: what the parent needs to serve the image
// and what the enclave needs to open it.
type Manifest struct {
	// Verity are the dm-verity parameters; the tree starts at
	// Verity.HashOffset == FSSize in rootfs.img.
	Verity *verity.Params `json:"verity"`
	// FSType is "erofs"; FSSize its size in bytes (the verity data area).
	FSType string `json:"fs_type"`
	FSSize int64  `json:"fs_size"`
	// Image says where the filesystem came from.
	Image ImageInfo `json:"image"`
	// App is how to run the application (from the image config).
	App App `json:"app"`
	// SourceDateEpoch is the timestamp used (Unix seconds), 0 if none.
	SourceDateEpoch int64 `json:"source_date_epoch"`
}

// ImageInfo identifies the source image.
type ImageInfo struct {
	Ref          string        `json:"ref"`
	Digest       digest.Digest `json:"digest"`
	ConfigDigest digest.Digest `json:"config_digest"`
	Platform     string        `json:"platform"`
	Layers       int           `json:"layers"`
}

// App is the run configuration; its JSON matches nbd-enclave's "app".
type App struct {
	Entrypoint []string `json:"entrypoint,omitempty"`
	Cmd        []string `json:"cmd,omitempty"`
	Env        []string `json:"env,omitempty"`
	WorkingDir string   `json:"workingDir,omitempty"`
	User       string   `json:"user,omitempty"`
}

// Build runs the whole pipeline.
func Build(ctx context.Context, opts Options) (*Result, error) {
	if opts.Ref == "" {
		return nil, errors.New("imgbuild: no image reference")
	}
	if opts.OutDir == "" {
		opts.OutDir = "."
	}
	if opts.Kernel != "" && opts.Init == "" {
		return nil, errors.New("imgbuild: an EIF needs the nbd-enclave binary (Init) besides the kernel")
	}
	if err := os.MkdirAll(opts.OutDir, 0o755); err != nil {
		return nil, fmt.Errorf("imgbuild: %w", err)
	}
	spool := opts.SpoolDir
	if spool == "" {
		spool = opts.OutDir
	}
	r := &run{opts: opts, total: 5}
	if opts.Kernel != "" {
		r.total = 6
	}
	res := &Result{}

	var im *imgsrc.Image
	err := r.step(StepOpen, func() (string, error) {
		var err error
		im, err = OpenImage(ctx, opts.Ref, opts.Platform)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("%s %s, %d layers", im.Ref, im.Digest, len(im.LayerInfos)), nil
	})
	if err != nil {
		return nil, err
	}
	defer im.Close()

	var fl *layer.Flattener
	err = r.step(StepFlatten, func() (string, error) {
		var err error
		lo := layer.Options{SpoolDir: spool, Limits: opts.Limits, Policy: opts.Policy}
		fl, err = Flatten(ctx, im, lo, func(l imgsrc.LayerInfo) {
			if opts.Progress != nil {
				opts.Progress(Event{Step: StepFlatten, Index: r.n, Total: r.total,
					Detail: fmt.Sprintf("layer %d/%d %s", l.Index+1, len(im.LayerInfos), l.Digest)})
			}
		})
		if err != nil {
			return "", err
		}
		detail := fmt.Sprintf("%d entries, %d MiB of content", fl.Entries(), fl.SpoolSize()>>20)
		if st := fl.Stats(); st != (layer.Stats{}) {
			detail += fmt.Sprintf("; dropped %d device nodes and %d xattrs, cleared setuid on %d files",
				st.DroppedDevices, st.DroppedXattrs, st.ClearedSetuid)
		}
		return detail, nil
	})
	if err != nil {
		return nil, err
	}
	defer fl.Close()

	sde := opts.SourceDateEpoch
	if sde.IsZero() {
		sde = im.Config.Created
	}
	tmpRootfs := filepath.Join(opts.OutDir, "."+RootfsFile+".tmp")
	defer os.Remove(tmpRootfs)
	salt := opts.Salt
	if salt == nil {
		salt = DeriveSalt(im.ConfigDigest)
	}
	rootfs, err := os.OpenFile(tmpRootfs, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("imgbuild: %w", err)
	}
	defer rootfs.Close()
	// The verity tree is hashed from the chunks erofs writes, on their
	// way to the file (erofs.Options.Tee): the image is never read back.
	vt := &verityTee{f: rootfs, salt: salt}
	var st erofs.Stats
	err = r.step(StepWriteFS, func() (string, error) {
		var err error
		st, err = writeFS(ctx, fl, rootfs, sde, vt)
		if err != nil {
			return "", fmt.Errorf("imgbuild: writing %s: %w", tmpRootfs, err)
		}
		return fmt.Sprintf("%d inodes, %d MiB", st.Inodes, st.Size>>20), nil
	})
	if err != nil {
		return nil, err
	}
	fl.Close() // the spool is no longer needed

	var vp *verity.Params
	err = r.step(StepVerity, func() (string, error) {
		var err error
		vp, err = vt.finish(ctx, st)
		if err == nil {
			err = rootfs.Close()
		}
		if err != nil {
			return "", fmt.Errorf("imgbuild: verity of %s: %w", tmpRootfs, err)
		}
		return fmt.Sprintf("root %x", []byte(vp.RootHash)), nil
	})
	if err != nil {
		return nil, err
	}

	platform := opts.Platform
	if platform == "" {
		platform = imgsrc.DefaultPlatform
	}
	res.Manifest = Manifest{
		Verity: vp,
		FSType: "erofs",
		FSSize: st.Size,
		Image: ImageInfo{
			Ref: im.Ref, Digest: im.Digest, ConfigDigest: im.ConfigDigest,
			Platform: platform, Layers: len(im.LayerInfos),
		},
		App: App{
			Entrypoint: im.Config.Entrypoint, Cmd: im.Config.Cmd, Env: im.Config.Env,
			WorkingDir: im.Config.WorkingDir, User: im.Config.User,
		},
	}
	if !sde.IsZero() {
		res.Manifest.SourceDateEpoch = sde.Unix()
	}
	res.Rootfs = filepath.Join(opts.OutDir, RootfsFile)
	res.ManifestPath = filepath.Join(opts.OutDir, ManifestFile)
	err = r.step(StepManifest, func() (string, error) {
		// An EIF or pcrs.json from an earlier build would pin another
		// root hash: remove them before the new rootfs.img lands.
		for _, name := range []string{EIFFile, PCRsFile, KeyPolicyFile} {
			if err := os.Remove(filepath.Join(opts.OutDir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
				return "", fmt.Errorf("imgbuild: removing stale %s: %w", name, err)
			}
		}
		if err := os.Rename(tmpRootfs, res.Rootfs); err != nil {
			return "", fmt.Errorf("imgbuild: %w", err)
		}
		return res.ManifestPath, WriteManifest(res.ManifestPath, &res.Manifest)
	})
	if err != nil {
		return nil, err
	}

	if opts.Kernel != "" {
		res.EIF = filepath.Join(opts.OutDir, EIFFile)
		res.PCRs = filepath.Join(opts.OutDir, PCRsFile)
		err = r.step(StepEIF, func() (string, error) {
			pcrs, err := WriteEIF(ctx, EIFOptions{
				Out:           res.EIF,
				PCRsOut:       res.PCRs,
				Kernel:        opts.Kernel,
				Cmdline:       opts.Cmdline,
				Init:          opts.Init,
				Bootstrap:     opts.Bootstrap,
				EnclaveConfig: opts.EnclaveConfig,
				Manifest:      &res.Manifest,
				BuildTime:     sde,
				KernelModules: opts.KernelModules,
				ModuleNames:   opts.KernelModuleNames,
				ModulesOut:    &res.Modules,
			})
			if err != nil {
				return "", err
			}
			res.KeyPolicy = filepath.Join(opts.OutDir, KeyPolicyFile)
			if err := WriteKeyPolicy(res.KeyPolicy, pcrs); err != nil {
				return "", err
			}
			res.PCRValues = &pcrs
			return "PCR0 " + pcrs.PCR0.String(), nil
		})
		if err != nil {
			return nil, err
		}
	}
	res.Steps = r.times
	return res, nil
}

// run times the steps of one build and reports them.
type run struct {
	opts  Options
	total int
	n     int
	times []StepTime
}

func (r *run) step(name string, f func() (string, error)) error {
	r.n++
	if r.opts.Progress != nil {
		r.opts.Progress(Event{Step: name, Index: r.n, Total: r.total})
	}
	start := time.Now()
	detail, err := f()
	if err != nil {
		return err
	}
	el := time.Since(start)
	r.times = append(r.times, StepTime{name, el})
	if r.opts.Progress != nil {
		r.opts.Progress(Event{Step: name, Index: r.n, Total: r.total, Done: true, Elapsed: el, Detail: detail})
	}
	return nil
}

// OpenImage opens ref for platform (empty: imgsrc.DefaultPlatform).
func OpenImage(ctx context.Context, ref, platform string) (*imgsrc.Image, error) {
	return imgsrc.Open(ctx, ref, imgsrc.Options{Platform: platform})
}

// Flatten applies every layer of im, verifying each as it streams, and
// returns the flattener holding the tree; the caller closes it. opts
// gives the spool directory, limits and policy. onLayer, if not nil, is
// called as each layer starts.
func Flatten(ctx context.Context, im *imgsrc.Image, opts layer.Options, onLayer func(imgsrc.LayerInfo)) (*layer.Flattener, error) {
	fl, err := layer.New(opts)
	if err != nil {
		return nil, err
	}
	for l, err := range im.Layers(ctx) {
		if err == nil {
			if onLayer != nil {
				onLayer(l.LayerInfo)
			}
			err = fl.Apply(ctx, l.Tar, string(l.Digest))
		}
		if err != nil {
			fl.Close()
			return nil, fmt.Errorf("imgbuild: %s: %w", im.Ref, err)
		}
	}
	return fl, nil
}

// WriteFS writes the flattened tree as an EROFS image to path (created or
// truncated). buildTime zero lets erofs choose (SOURCE_DATE_EPOCH, else
// the newest mtime in the tree).
func WriteFS(ctx context.Context, fl *layer.Flattener, path string, buildTime time.Time) (erofs.Stats, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return erofs.Stats{}, fmt.Errorf("imgbuild: %w", err)
	}
	st, err := writeFS(ctx, fl, f, buildTime, nil)
	if cerr := f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("imgbuild: %s: %w", path, cerr)
	}
	if err != nil {
		return erofs.Stats{}, fmt.Errorf("imgbuild: writing %s: %w", path, err)
	}
	return st, nil
}

func writeFS(ctx context.Context, fl *layer.Flattener, f *os.File, buildTime time.Time, tee erofs.Tee) (erofs.Stats, error) {
	return erofs.Write(ctx, f, fl.Tree(), erofs.Options{BuildTime: buildTime, Tee: tee})
}

// verityTee builds the verity tree of an EROFS image from the chunks
// erofs.Write hands its Tee, and writes it right after the filesystem in
// the same file, as AppendVerity would: same tree, same bytes, without
// reading the image back.
type verityTee struct {
	f    *os.File
	salt []byte
	b    *verity.Builder
	// flushed is how far the image was handed to startWriteback.
	flushed int64
}

// writebackLag is how far behind the newest chunk the tee starts the
// image's writeback: erofs's writer goroutine may be a few 1 MiB chunks
// behind its tee, and pages not yet written would be skipped.
const writebackLag = 16 << 20

func (t *verityTee) Begin(size int64) error {
	var err error
	t.b, err = verity.NewBuilder(size, t.f, verityOptions(size, t.salt))
	return err
}

func (t *verityTee) WriteAt(p []byte, off int64) (int, error) {
	n, err := t.b.WriteAt(p, off)
	if end := off - writebackLag; end-t.flushed >= writebackLag {
		startWriteback(t.f, t.flushed, end-t.flushed)
		t.flushed = end
	}
	return n, err
}

// finish writes the upper levels and the superblock, with the UUID
// derived from the filesystem's, and syncs the file, as
// verity.FormatFile does.
func (t *verityTee) finish(ctx context.Context, st erofs.Stats) (*verity.Params, error) {
	if t.b == nil {
		return nil, errors.New("no filesystem was written")
	}
	p, err := t.b.Finish(ctx, verityUUID(st))
	if err != nil {
		return nil, err
	}
	if err := t.f.Sync(); err != nil {
		return nil, fmt.Errorf("sync: %w", err)
	}
	return p, nil
}

// verityOptions are the verity parameters of a filesystem of size bytes:
// the tree appended right after it.
func verityOptions(size int64, salt []byte) verity.Options {
	return verity.Options{
		HashOffset: uint64(size),
		DataBlocks: uint64(size) / erofs.BlockSize,
		Salt:       salt,
	}
}

// verityUUID derives the verity UUID from the filesystem's, so that it is
// reproducible.
func verityUUID(st erofs.Stats) string {
	u := st.UUID
	u[6] = u[6]&0x0f | 0x80 // a "custom" (version 8) UUID, RFC 9562
	u[8] = u[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}

// AppendVerity appends a dm-verity superblock and hash tree (sha256, 4096-
// byte blocks) to the filesystem image at path, right after its st.Size
// bytes. The verity UUID is derived from the filesystem's UUID, so it is
// reproducible.
//
// Build does the same while the filesystem is written (erofs.Options.Tee),
// without reading it back; this is the step on its own, for a filesystem
// written by WriteFS.
func AppendVerity(ctx context.Context, path string, st erofs.Stats, salt []byte) (*verity.Params, error) {
	o := verityOptions(st.Size, salt)
	o.UUID = verityUUID(st)
	p, err := verity.FormatFile(ctx, path, path, o)
	if err != nil {
		return nil, fmt.Errorf("imgbuild: verity of %s: %w", path, err)
	}
	return p, nil
}

// DeriveSalt returns the default verity salt of an image: SHA-256 of a
// fixed label and the image's config digest (docker's image ID).
//
// Not the manifest digest: each transport writes its own manifest
// (docker-archive a Docker schema 2 one, oci-archive an OCI one, with
// other media types and layer digests when it recompresses), so the same
// image read through two transports would get two salts and two root
// hashes. The config blob is copied unchanged between them, and it names
// every layer by the SHA-256 of its uncompressed content (rootfs.diff_ids)
// besides the run configuration: images with different content have
// different config digests, so their salts still differ.
func DeriveSalt(config digest.Digest) []byte {
	h := sha256.New()
	io.WriteString(h, "enclave-storage imgbuild verity salt\x00")
	io.WriteString(h, string(config))
	return h.Sum(nil)
}

// WriteManifest writes m as indented JSON to path, atomically.
func WriteManifest(path string, m *Manifest) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("imgbuild: %w", err)
	}
	return writeFileAtomic(path, append(b, '\n'))
}

// writeFileAtomic writes b to a temporary file next to path and renames it.
func writeFileAtomic(path string, b []byte) error {
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("imgbuild: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("imgbuild: %w", err)
	}
	return nil
}

// EIFOptions are the inputs of WriteEIF.
type EIFOptions struct {
	Out, PCRsOut  string // the EIF and its pcrs.json
	Kernel        string
	Cmdline       string
	Init          string // nbd-enclave
	Bootstrap     string // optional first ramdisk
	EnclaveConfig string // optional nbd-enclave config JSON
	Manifest      *Manifest
	BuildTime     time.Time
	// KernelModules, when set, is the module tree whose modules
	// (ModuleNames, nil for kmod.DefaultNames) go into the bootstrap
	// ramdisk (ModulesRamdisk); ModulesOut, if not nil, receives them.
	KernelModules string
	ModuleNames   []string
	ModulesOut    **ModuleSet
}

// WriteEIF builds the enclave image: the kernel, the command line with
// the root hash pinned, the bootstrap ramdisk and an application ramdisk
// holding nbd-enclave, the verity parameters and its configuration. It
// writes pcrs.json (nitro-cli's Measurements JSON) too.
func WriteEIF(ctx context.Context, o EIFOptions) (eif.PCRs, error) {
	m := o.Manifest
	cmdline, err := eif.PinCmdline(o.Cmdline, m.Verity.RootHash)
	if err != nil {
		return eif.PCRs{}, fmt.Errorf("imgbuild: %w", err)
	}
	init, err := os.ReadFile(o.Init)
	if err != nil {
		return eif.PCRs{}, fmt.Errorf("imgbuild: nbd-enclave binary: %w", err)
	}
	vj, err := json.Marshal(m.Verity)
	if err != nil {
		return eif.PCRs{}, fmt.Errorf("imgbuild: %w", err)
	}
	cj, err := enclaveConfig(o.EnclaveConfig, m.App)
	if err != nil {
		return eif.PCRs{}, err
	}
	var mtime int64
	if !o.BuildTime.IsZero() {
		mtime = o.BuildTime.Unix()
	}
	var app bytes.Buffer
	if err := (&eif.AppRamdisk{Enclave: init, VerityJSON: vj, ConfigJSON: cj, ModTime: mtime}).Write(ctx, &app); err != nil {
		return eif.PCRs{}, fmt.Errorf("imgbuild: %w", err)
	}
	boot, err := bootstrapRamdisk(ctx, o, mtime)
	if err != nil {
		return eif.PCRs{}, err
	}
	if c, ok := boot.(fileBlob); ok {
		defer c.Close()
	}
	kernel, err := openBlob(o.Kernel)
	if err != nil {
		return eif.PCRs{}, err
	}
	defer kernel.Close()

	bt := o.BuildTime
	if bt.IsZero() {
		bt = time.Unix(0, 0)
	}
	flags, err := eifFlags(kernel, m.Image.Platform)
	if err != nil {
		return eif.PCRs{}, err
	}
	meta := eif.Metadata{
		ImageName:    eifImageName(m.Image.Ref),
		ImageVersion: m.Image.ConfigDigest.Encoded(),
		BuildMetadata: eif.BuildInfo{
			BuildTime:       eif.FormatBuildTime(bt),
			BuildTool:       "imgbuild",
			OperatingSystem: "Linux",
			KernelVersion:   kernelVersion(o.Kernel),
		},
	}
	tmp := filepath.Join(filepath.Dir(o.Out), "."+filepath.Base(o.Out)+".tmp")
	f, err := os.Create(tmp)
	if err != nil {
		return eif.PCRs{}, fmt.Errorf("imgbuild: %w", err)
	}
	defer os.Remove(tmp)
	bw := bufio.NewWriterSize(f, 1<<20)
	pcrs, err := eif.Build(ctx, bw, &eif.Spec{
		Kernel:   kernel,
		Cmdline:  cmdline,
		Ramdisks: []eif.Blob{boot, bytes.NewReader(app.Bytes())},
		Metadata: meta,
		Flags:    flags,
	})
	if err == nil {
		err = bw.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return eif.PCRs{}, fmt.Errorf("imgbuild: writing %s: %w", o.Out, err)
	}
	if err := os.Rename(tmp, o.Out); err != nil {
		return eif.PCRs{}, fmt.Errorf("imgbuild: %w", err)
	}
	pj, err := json.MarshalIndent(eif.Measurements{Measurements: pcrs}, "", "  ")
	if err != nil {
		return eif.PCRs{}, fmt.Errorf("imgbuild: %w", err)
	}
	return pcrs, writeFileAtomic(o.PCRsOut, append(pj, '\n'))
}

// enclaveConfig returns nbd-enclave's config JSON: the file's, if given,
// with "app" filled in from the image when the file has none.
func enclaveConfig(file string, app App) ([]byte, error) {
	cfg := map[string]json.RawMessage{}
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("imgbuild: enclave config: %w", err)
		}
		if err := json.Unmarshal(b, &cfg); err != nil {
			return nil, fmt.Errorf("imgbuild: enclave config %s: %w", file, err)
		}
	}
	if _, ok := cfg["app"]; !ok {
		b, err := json.Marshal(app)
		if err != nil {
			return nil, fmt.Errorf("imgbuild: %w", err)
		}
		cfg["app"] = b
	}
	return json.Marshal(cfg) // maps marshal with sorted keys: reproducible
}

// fileBlob is an open file as an eif.Blob.
type fileBlob struct {
	*io.SectionReader
	f *os.File
}

func (b fileBlob) Close() error { return b.f.Close() }

func openBlob(path string) (fileBlob, error) {
	f, err := os.Open(path)
	if err != nil {
		return fileBlob{}, fmt.Errorf("imgbuild: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return fileBlob{}, fmt.Errorf("imgbuild: %w", err)
	}
	return fileBlob{io.NewSectionReader(f, 0, st.Size()), f}, nil
}

// LogProgress returns a Progress function that logs each step's start
// and end to log, for non-terminal output.
func LogProgress(log *slog.Logger) func(Event) {
	return func(e Event) {
		switch {
		case !e.Done && e.Detail == "":
			log.Info("step", "step", e.Step, "n", e.Index, "of", e.Total)
			return
		case !e.Done:
			log.Info("progress", "step", e.Step, "detail", e.Detail)
			return
		}
		log.Info("done", "step", e.Step, "elapsed", e.Elapsed.Round(time.Millisecond), "detail", e.Detail)
	}
}

// eifImageName is the EIF metadata's ImageName as nitro-cli writes it: the
// image reference without its tag (nitro-cli takes the --docker-uri up to
// its first ':'). Here the reference also loses its transport and any
// digest, and only a last ':' that is not followed by a '/' counts as a
// tag, so a registry port ("registry:5000/app:1") is kept where nitro-cli
// would cut the name to "registry". ImageVersion is, as nitro-cli's
// default, the image ID: the config digest without "sha256:".
func eifImageName(ref string) string {
	for _, t := range []string{"docker://", "docker-daemon:", "docker-archive:", "oci-archive:", "oci:"} {
		if r, ok := strings.CutPrefix(ref, t); ok {
			ref = r
			break
		}
	}
	if i := strings.IndexByte(ref, '@'); i >= 0 {
		ref = ref[:i]
	}
	if i := strings.LastIndexByte(ref, ':'); i >= 0 && !strings.Contains(ref[i:], "/") {
		ref = ref[:i]
	}
	return ref
}
