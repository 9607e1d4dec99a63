package imgbuild

import (
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/enclave-storage/enclave-storage/imgsrc"
	"github.com/enclave-storage/enclave-storage/ociimage"
)

// Paths and labels of the image WriteImage makes.
const (
	ImageEnclaveDir = "/enclave"            // the build's outputs
	ImageParentPath = "/usr/bin/nbd-parent" // the parent daemon
	ImageDataDir    = "/var/lib/enclave"    // a volume: the run image lives here
	LabelPrefix     = "org.enclave-storage."
	// DefaultRunSize is the run image's size when ImageOptions.RunSize is
	// empty: created sparse on first start, never resized.
	DefaultRunSize = "8G"
)

// ErrNotStatic reports a parent binary that needs a dynamic loader: the
// image has no libc, so it could not run there.
var ErrNotStatic = errors.New("not a statically linked executable")

// ImageOptions configure WriteImage.
type ImageOptions struct {
	// Dest is the destination reference, with its transport
	// ("oci-archive:app.tar", "docker-daemon:app:latest").
	Dest string
	// ParentBin is a statically linked nbd-parent executable.
	ParentBin string
	// RunSize is the run image's size (nbd-parent's size=); empty means
	// DefaultRunSize.
	RunSize string
	// Platform is the image's "os/arch[/variant]"; empty means the
	// build's.
	Platform string
	// Base, when set, is the image (a reference with its transport) the
	// package is layered on, pinned by digest for a reproducible result:
	// one with nitro-cli installed, which "nbd-parent run" starts the
	// enclave with. Its layers are copied unchanged; its Env is kept
	// under ours. Empty means none: the image then holds no nitro-cli.
	Base string
}

// ImageEntrypoint is the command the image runs: nbd-parent serving the
// verity image read-only and the run image, created in the data volume on
// first start, over vsock on the port nbd-enclave dials by default. It
// does not start the enclave: run nitro-cli run-enclave with
// /enclave/enclave.eif next to it.
func ImageEntrypoint(runSize string) []string {
	if runSize == "" {
		runSize = DefaultRunSize
	}
	return []string{ImageParentPath,
		"--listen", "vsock://:10809",
		"--export", "image=" + ImageEnclaveDir + "/" + RootfsFile + ",ro",
		"--export", "run=" + ImageDataDir + "/run.img,size=" + runSize,
		"--default", "image",
	}
}

// WriteImage packages a finished build with an EIF (res, from Build with
// a kernel) and the parent daemon as one container image: a layer with
// nbd-parent, then one with the enclave's files under /enclave; labels
// carrying the PCRs, the root hash and the source image's config digest;
// /var/lib/enclave a volume. Its timestamps are the build's
// SOURCE_DATE_EPOCH (the Unix epoch if it had none), so the same build
// gives the same image digest.
func WriteImage(ctx context.Context, res *Result, o ImageOptions) (*ociimage.Result, error) {
	if res.EIF == "" || res.PCRValues == nil {
		return nil, errors.New("imgbuild: an image needs the EIF: build with a kernel")
	}
	if err := checkStatic(o.ParentBin); err != nil {
		return nil, err
	}
	m := &res.Manifest
	dir := filepath.Dir(res.Rootfs)
	enc := func(name string) ociimage.File {
		return ociimage.File{Path: ImageEnclaveDir + "/" + name, Source: filepath.Join(dir, name)}
	}
	p := o.Platform
	if p == "" {
		p = m.Image.Platform
	}
	spec := &ociimage.Spec{
		Layers: [][]ociimage.File{
			{{Path: ImageParentPath, Source: o.ParentBin, Mode: 0o755}},
			{enc(EIFFile), enc(RootfsFile), enc(ManifestFile), enc(PCRsFile), enc(KeyPolicyFile)},
		},
		Dirs:       []string{ImageDataDir},
		Entrypoint: ImageEntrypoint(o.RunSize),
		WorkingDir: ImageEnclaveDir,
		Volumes:    []string{ImageDataDir},
		Labels: map[string]string{
			LabelPrefix + "pcr0":          res.PCRValues.PCR0.String(),
			LabelPrefix + "pcr1":          res.PCRValues.PCR1.String(),
			LabelPrefix + "pcr2":          res.PCRValues.PCR2.String(),
			LabelPrefix + "root-hash":     fmt.Sprintf("%x", []byte(m.Verity.RootHash)),
			LabelPrefix + "source-config": string(m.Image.ConfigDigest),
		},
		Created:  time.Unix(m.SourceDateEpoch, 0).UTC(),
		Platform: p,
	}
	if o.Base != "" {
		b, err := imgsrc.Open(ctx, o.Base, imgsrc.Options{Platform: p})
		if err != nil {
			return nil, fmt.Errorf("imgbuild: base image: %w", err)
		}
		defer b.Close()
		spec.Base = b
		spec.Labels[LabelPrefix+"base"] = string(b.Digest)
	}
	r, err := ociimage.Write(ctx, o.Dest, spec, nil)
	if err != nil {
		return nil, fmt.Errorf("imgbuild: %w", err)
	}
	return r, nil
}

// checkStatic refuses a file that is not an ELF executable or that names
// a program interpreter (a dynamic loader).
func checkStatic(path string) error {
	if path == "" {
		return errors.New("imgbuild: no nbd-parent binary given")
	}
	r, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("imgbuild: nbd-parent: %w", err)
	}
	defer r.Close()
	f, err := elf.NewFile(r)
	if err != nil {
		return fmt.Errorf("imgbuild: nbd-parent %s: %w: %w", path, ErrNotStatic, err)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("imgbuild: nbd-parent %s: %w (it asks for a dynamic loader; build it with CGO_ENABLED=0)", path, ErrNotStatic)
		}
	}
	return nil
}
