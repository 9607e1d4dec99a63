package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/enclave-storage/enclave-storage/imgbuild"
)

// tagFlags are build's flags for packaging the outputs as an image.
type tagFlags struct {
	tag, parentBin, runSize, base *string
}

func addTagFlags(fs *flag.FlagSet) tagFlags {
	return tagFlags{
		tag:       fs.String("tag", "", "also write the outputs and nbd-parent as one container image to this destination: oci-archive:FILE[:TAG], oci:DIR[:TAG], docker-archive:FILE[:NAME:TAG], docker-daemon:NAME:TAG, docker://REF (needs --kernel)"),
		parentBin: fs.String("parent-bin", "", "statically linked nbd-parent for --tag (default: nbd-parent next to imgbuild, else bin/nbd-parent)"),
		base:      fs.String("base", "", "base image for --tag, holding nitro-cli (nbd-parent run starts the enclave with it), e.g. one built FROM amazonlinux:2023 with aws-nitro-enclaves-cli; pin it by digest"),
		runSize:   fs.String("run-size", imgbuild.DefaultRunSize, "size of the run image the --tag image's nbd-parent creates in /var/lib/enclave"),
	}
}

// check reports a --tag without what it needs, before the build runs.
func (t tagFlags) check(kernel string) error {
	if *t.tag != "" && kernel == "" {
		return usagef("--tag needs --kernel (the image carries the EIF)")
	}
	return nil
}

// write packages res when --tag was given and prints the image's
// manifest digest and its image ID (config digest): docker-archive: and
// docker-daemon: keep no manifest, tools reading them show a digest of
// their own, the image ID is the same everywhere.
func (t tagFlags) write(ctx context.Context, env *cliEnv, res *imgbuild.Result) error {
	if *t.tag == "" {
		return nil
	}
	parent := *t.parentBin
	if parent == "" {
		parent = defaultParentBin()
	}
	start := time.Now()
	r, err := imgbuild.WriteImage(ctx, res, imgbuild.ImageOptions{Dest: *t.tag, ParentBin: parent, RunSize: *t.runSize, Base: *t.base})
	if err != nil {
		return err
	}
	w := env.stdout
	fmt.Fprintf(w, "image out:   %s\n", *t.tag)
	fmt.Fprintf(w, "digest:      %s (%s)\n", r.Digest, r.ManifestType)
	fmt.Fprintf(w, "image id:    %s\n", r.ConfigDigest)
	fmt.Fprintf(w, "time %-8s %8.3fs\n", "tag", time.Since(start).Seconds())
	return nil
}

// defaultParentBin is nbd-parent next to this executable (make build puts
// both in bin/), else bin/nbd-parent under the working directory.
func defaultParentBin() string {
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), "nbd-parent")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return filepath.Join("bin", "nbd-parent")
}
