// Command mkerofs writes an EROFS image of a directory with package erofs:
// the driver of scripts/bench-erofs.sh, which times it against mkfs.erofs
// and mkfs.ext4 -d on the same tree.
//
// Usage:
//
//	mkerofs [-build-time UNIX] [-noinline] [-uuid HEX] IMAGE DIR
package main

import (
	"context"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/enclave-storage/enclave-storage/erofs"
	"github.com/enclave-storage/enclave-storage/fstree"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(ctx, log, os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		log.Error("mkerofs failed", "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, log *slog.Logger, args []string) error {
	fs := flag.NewFlagSet("mkerofs", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: mkerofs [flags] IMAGE DIR\n\nWrite an uncompressed EROFS image of DIR to IMAGE.")
		fs.PrintDefaults()
	}
	buildTime := fs.Int64("build-time", -1, "superblock build time, Unix seconds (default: SOURCE_DATE_EPOCH or newest mtime)")
	noInline := fs.Bool("noinline", false, "store no data tails inline next to inodes")
	uuid := fs.String("uuid", "", "volume UUID, 32 hex digits (default: derived from a hash of the image)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 2 {
		fs.Usage()
		return errors.New("need IMAGE and DIR")
	}
	img, dir := fs.Arg(0), fs.Arg(1)
	opts := erofs.Options{NoInline: *noInline}
	if *buildTime >= 0 {
		opts.BuildTime = time.Unix(*buildTime, 0)
	}
	if *uuid != "" {
		b, err := hex.DecodeString(strings.ReplaceAll(*uuid, "-", ""))
		if err != nil || len(b) != 16 {
			return fmt.Errorf("-uuid %q: want 32 hex digits", *uuid)
		}
		copy(opts.UUID[:], b)
	}
	start := time.Now()
	tree, err := fstree.FromDir(ctx, dir)
	if err != nil {
		return err
	}
	scanned := time.Since(start)
	f, err := os.Create(img)
	if err != nil {
		return err
	}
	st, err := erofs.Write(ctx, f, tree, opts)
	if err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	log.Info("wrote image", "image", img, "bytes", st.Size, "inodes", st.Inodes,
		"meta_bytes", st.MetaBytes, "scan", scanned.Round(time.Millisecond), "total", time.Since(start).Round(time.Millisecond))
	return nil
}
