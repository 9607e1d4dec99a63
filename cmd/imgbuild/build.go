package main

import (
	"context"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/enclave-storage/enclave-storage/imgbuild"
	"github.com/enclave-storage/enclave-storage/imgsrc"
	"github.com/enclave-storage/enclave-storage/kmod"
	"github.com/enclave-storage/enclave-storage/layer"
)

func buildCommand() subcommand {
	return subcommand{
		name:    "build",
		summary: "build rootfs.img (erofs + dm-verity), rootfs.verity.json and, with --kernel, enclave.eif (default)",
		run:     runBuild,
	}
}

const buildSynopsis = `[build] --in IMAGE [flags]

Reads IMAGE, flattens its layers into an EROFS filesystem, appends a
dm-verity hash tree and writes to --out:
  rootfs.img           the filesystem, then the verity superblock and tree
  rootfs.verity.json   verity parameters, filesystem size, image digest, app config
  enclave.eif          with --kernel and --init: an EIF pinning the root hash
                       (with --kernel-modules, its bootstrap ramdisk carries
                       the kernel modules nbd-enclave loads at boot)
  pcrs.json            its PCRs (nitro-cli's Measurements JSON)
  kms-key-policy.json  KMS key-policy statements (a JSON array): an Allow of
                       GenerateDataKey and Decrypt for an enclave with these
                       PCRs (replace the principal placeholder with the
                       parent's instance role), and a Deny per PCR, for
                       everyone, of any call without them
With --tag DEST, also one container image of those files and nbd-parent
(see README, "One image").

IMAGE uses containers' transport syntax: docker://REF, docker-daemon:REF,
docker-archive:FILE, oci-archive:FILE, oci:DIR[:TAG]. A bare REF
(app:latest) means the local docker daemon, then the registry.`

func runBuild(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlagSet(env, "build", buildSynopsis)
	var (
		in       = fs.String("in", "", "image reference (required)")
		out      = fs.String("out", "./out", "output directory")
		platform = fs.String("platform", imgsrc.DefaultPlatform, "platform os/arch[/variant] chosen from a multi-platform image")
		kernel   = fs.String("kernel", "", "kernel image (bzImage) for the EIF; without it no EIF is built")
		cmdline  = fs.String("cmdline", "console=ttyS0 reboot=k panic=30 pci=off nomodules", "base kernel command line (the verity root hash is appended)")
		initBin  = fs.String("init", "", "nbd-enclave binary for the EIF's application ramdisk (required with --kernel)")
		boot     = fs.String("bootstrap", "", "bootstrap (first) ramdisk for the EIF (default: an empty cpio)")
		encCfg   = fs.String("enclave-config", "", "nbd-enclave config JSON for the ramdisk (its \"app\" is filled from the image when absent)")
		modDir   = fs.String("kernel-modules", "", "the kernel's module tree (lib/modules/KVER, or a root holding one): its modules nbd-enclave needs go into the bootstrap ramdisk; omit for a kernel with everything built in")
		modNames = fs.String("kernel-module-names", strings.Join(kmod.DefaultNames(), ","), "modules to take with --kernel-modules (dependencies added, built-ins skipped, NAME? optional); a list starting with + adds to the default, e.g. +vsock_loopback for a test VM")
		salt     = fs.String("salt", "", "verity salt as hex, - for none (default: derived from the image config digest)")
		sde      = fs.String("source-date-epoch", os.Getenv("SOURCE_DATE_EPOCH"), "timestamp (Unix seconds) for the filesystem and EIF (default: $SOURCE_DATE_EPOCH, else the image's creation time)")
		progress = fs.String("progress", "auto", "auto (a progress line on a terminal, else log lines) or plain (log lines)")

		maxXattrValue = sizeFlag(fs, layer.LimitXattrValue, layer.DefaultMaxXattrValue, "largest extended attribute value")
		maxXattrTotal = sizeFlag(fs, layer.LimitXattrTotal, layer.DefaultMaxXattrTotal, "extended attribute bytes of all entries together")
		maxEntries    = fs.Int64(layer.LimitEntries, layer.DefaultMaxEntries, "tar entries of all layers together")
		maxFileSize   = sizeFlag(fs, layer.LimitFileSize, layer.DefaultMaxFileSize, "largest regular file")
		maxSize       = sizeFlag(fs, layer.LimitSize, layer.DefaultMaxSize, "file content of all layers together")
		keepDevices   = fs.Bool("keep-devices", false, "keep the image's device nodes (default: dropped, and counted)")
		dropSetuid    = fs.Bool("drop-setuid", false, "clear setuid/setgid bits of regular files (default: kept, as docker does)")
		dropCaps      = fs.Bool("drop-caps", false, "drop file capabilities, security.capability (default: kept, as docker does)")
	)
	tag := addTagFlags(fs)
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("unexpected argument %q", pos[0])
	}
	if *in == "" {
		fs.Usage()
		return usagef("--in is required")
	}
	opts := imgbuild.Options{
		Ref: *in, Platform: *platform, OutDir: *out,
		Kernel: *kernel, Cmdline: *cmdline, Init: *initBin, Bootstrap: *boot, EnclaveConfig: *encCfg,
		KernelModules: *modDir, KernelModuleNames: kmod.ParseNames(*modNames),
		Limits: layer.Limits{MaxXattrValue: int64(*maxXattrValue), MaxXattrTotal: int64(*maxXattrTotal), MaxEntries: *maxEntries,
			MaxFileSize: int64(*maxFileSize), MaxSize: int64(*maxSize)},
		Policy: layer.Policy{KeepDevices: *keepDevices, DropSetuid: *dropSetuid, DropCaps: *dropCaps},
	}
	if *modDir != "" && *kernel == "" {
		return usagef("--kernel-modules needs --kernel")
	}
	if *maxEntries <= 0 {
		return usagef("--%s %d: want a positive number", layer.LimitEntries, *maxEntries)
	}
	if *kernel != "" && *initBin == "" {
		return usagef("--kernel needs --init (the nbd-enclave binary)")
	}
	if err := tag.check(*kernel); err != nil {
		return err
	}
	switch *salt {
	case "":
	case "-":
		opts.Salt = []byte{}
	default:
		if opts.Salt, err = hex.DecodeString(*salt); err != nil {
			return usagef("--salt %q: not hex", *salt)
		}
	}
	if *sde != "" {
		n, err := strconv.ParseInt(*sde, 10, 64)
		if err != nil || n < 0 {
			return usagef("--source-date-epoch %q: want Unix seconds", *sde)
		}
		opts.SourceDateEpoch = time.Unix(n, 0).UTC()
	}
	switch *progress {
	case "auto":
		if isTerminal(env.stderr) {
			opts.Progress = termProgress(env.stderr)
		} else {
			opts.Progress = imgbuild.LogProgress(env.log)
		}
	case "plain":
		opts.Progress = imgbuild.LogProgress(env.log)
	default:
		return usagef("--progress %q: want auto or plain", *progress)
	}

	res, err := imgbuild.Build(ctx, opts)
	if err != nil {
		return err
	}
	m := res.Manifest
	w := env.stdout
	fmt.Fprintf(w, "image:       %s %s\n", m.Image.Ref, m.Image.Digest)
	fmt.Fprintf(w, "rootfs:      %s (erofs %d bytes, verity tree at offset %d)\n", res.Rootfs, m.FSSize, m.Verity.HashOffset)
	fmt.Fprintf(w, "root hash:   %x\n", []byte(m.Verity.RootHash))
	fmt.Fprintf(w, "manifest:    %s\n", res.ManifestPath)
	if res.EIF != "" {
		fmt.Fprintf(w, "eif:         %s\n", res.EIF)
		fmt.Fprintf(w, "PCR0:        %s\n", res.PCRValues.PCR0)
		fmt.Fprintf(w, "PCR1:        %s\n", res.PCRValues.PCR1)
		fmt.Fprintf(w, "PCR2:        %s\n", res.PCRValues.PCR2)
	}
	if ms := res.Modules; ms != nil {
		fmt.Fprintf(w, "modules:     %d for %s (%d bytes) in the bootstrap ramdisk\n", len(ms.Modules), ms.Release, ms.Bytes)
	}
	var total time.Duration
	for _, s := range res.Steps {
		total += s.Elapsed
		fmt.Fprintf(w, "time %-8s %8.3fs\n", s.Step, s.Elapsed.Seconds())
	}
	fmt.Fprintf(w, "time %-8s %8.3fs\n", "total", total.Seconds())
	return tag.write(ctx, env, res)
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// termProgress draws one line per step, rewritten when the step ends.
func termProgress(w io.Writer) func(imgbuild.Event) {
	return func(e imgbuild.Event) {
		if !e.Done {
			fmt.Fprintf(w, "\r\033[K[%d/%d] %s ... %s", e.Index, e.Total, e.Step, e.Detail)
			return
		}
		fmt.Fprintf(w, "\r\033[K[%d/%d] %-8s %6.2fs  %s\n", e.Index, e.Total, e.Step, e.Elapsed.Seconds(), e.Detail)
	}
}

// byteSize is a size flag: bytes, or a number with a binary suffix K, M,
// G or T (optionally followed by "iB" or "B": 64G, 64GiB, 1024).
type byteSize int64

func sizeFlag(fs *flag.FlagSet, name string, def int64, usage string) *byteSize {
	v := byteSize(def)
	fs.Var(&v, name, usage+" (bytes, or with a K/M/G/T suffix)")
	return &v
}

func (b *byteSize) String() string { return strconv.FormatInt(int64(*b), 10) }

func (b *byteSize) Set(s string) error {
	num := strings.TrimSuffix(strings.TrimSuffix(s, "B"), "i")
	shift := 0
	if i := len(num) - 1; i > 0 {
		if j := strings.IndexByte("KMGT", num[i]); j >= 0 {
			shift, num = 10*(j+1), num[:i]
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n <= 0 || n > math.MaxInt64>>shift {
		return fmt.Errorf("want a positive size such as 1024, 64K or 64G")
	}
	*b = byteSize(n << shift)
	return nil
}
