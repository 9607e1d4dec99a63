package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/enclave-storage/enclave-storage/verity"
)

func verityCommand() subcommand {
	return subcommand{
		name:    "verity",
		summary: "format, verify or dump dm-verity hash trees (veritysetup-compatible)",
		run:     runVerity,
	}
}

const verityUsage = `Usage: imgbuild verity ACTION [flags] ARGS

Actions (arguments and flags as veritysetup's):
  format DATA HASH          build the hash tree of DATA into HASH (may be DATA with --hash-offset)
  verify DATA HASH ROOT     check every block of DATA against the tree and ROOT hash
  dump   HASH               print the superblock of HASH

Examples:
  imgbuild verity format rootfs.img rootfs.img --hash-offset 104857600
  imgbuild verity verify rootfs.img rootfs.img 4392...c1 --hash-offset 104857600
`

func runVerity(ctx context.Context, env *cliEnv, args []string) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(env.stderr, verityUsage)
		if len(args) == 0 {
			return usagef("missing action")
		}
		return flag.ErrHelp
	}
	switch args[0] {
	case "format":
		return verityFormat(ctx, env, args[1:])
	case "verify":
		return verityVerify(ctx, env, args[1:])
	case "dump":
		return verityDump(env, args[1:])
	}
	fmt.Fprint(env.stderr, verityUsage)
	return usagef("unknown action %q", args[0])
}

// treeFlags are the flags format and verify share, as veritysetup names them.
type treeFlags struct {
	alg                string
	dbs, hbs           uint
	salt, uuid         string
	noSuperblock       bool
	dataBlocks, offset uint64
	rootHashFile       string
}

func (tf *treeFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&tf.alg, "hash", verity.DefaultAlgorithm, "hash algorithm: sha256, sha1, sha384, sha512")
	fs.UintVar(&tf.dbs, "data-block-size", verity.DefaultBlockSize, "data block size in bytes")
	fs.UintVar(&tf.hbs, "hash-block-size", verity.DefaultBlockSize, "hash block size in bytes")
	fs.StringVar(&tf.salt, "salt", "", "salt as hex, - for none (default: 32 random bytes)")
	fs.BoolVar(&tf.noSuperblock, "no-superblock", false, "no verity superblock on the hash device")
	fs.Uint64Var(&tf.dataBlocks, "data-blocks", 0, "number of data blocks (default: all of DATA)")
	fs.Uint64Var(&tf.offset, "hash-offset", 0, "byte offset of the superblock/tree on the hash device")
	fs.StringVar(&tf.rootHashFile, "root-hash-file", "", "write (format) or read (verify) the root hash as hex in this file")
}

func verityFormat(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlagSet(env, "verity format", "verity format DATA HASH [flags]")
	var tf treeFlags
	tf.register(fs)
	fs.StringVar(&tf.uuid, "uuid", "", "superblock UUID (default: random)")
	asJSON := fs.Bool("json", false, "print the parameters as JSON instead of veritysetup's text")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		fs.Usage()
		return usagef("want DATA and HASH, got %d arguments", len(pos))
	}
	opts := verity.Options{
		Algorithm: tf.alg, DataBlockSize: uint32(tf.dbs), HashBlockSize: uint32(tf.hbs),
		UUID: tf.uuid, NoSuperblock: tf.noSuperblock, DataBlocks: tf.dataBlocks, HashOffset: tf.offset,
	}
	if tf.salt != "" {
		if opts.Salt, err = verity.ParseHex(tf.salt); err != nil {
			return usagef("--salt: %v", err)
		}
	}
	start := time.Now()
	p, err := verity.FormatFile(ctx, pos[0], pos[1], opts)
	if err != nil {
		return err
	}
	elapsed := time.Since(start)
	env.log.Info("verity tree built", "data", pos[0], "hash", pos[1], "data_bytes", p.DataSize(),
		"seconds", elapsed.Seconds(), "mib_per_s", float64(p.DataSize())/(1<<20)/elapsed.Seconds())
	if tf.rootHashFile != "" {
		if err := os.WriteFile(tf.rootHashFile, []byte(hex.EncodeToString(p.RootHash)), 0o644); err != nil {
			return err
		}
	}
	if *asJSON {
		return writeJSON(env.stdout, p)
	}
	printVerityHeader(env.stdout, pos[1], p, true)
	return nil
}

func verityVerify(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlagSet(env, "verity verify", "verity verify DATA HASH ROOT [flags]")
	var tf treeFlags
	tf.register(fs)
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if tf.rootHashFile != "" && len(pos) == 2 {
		b, err := os.ReadFile(tf.rootHashFile)
		if err != nil {
			return err
		}
		pos = append(pos, strings.TrimSpace(string(b)))
	}
	if len(pos) != 3 {
		fs.Usage()
		return usagef("want DATA, HASH and ROOT, got %d arguments", len(pos))
	}
	root, err := hex.DecodeString(pos[2])
	if err != nil || len(root) == 0 {
		return usagef("root hash %q is not hex", pos[2])
	}
	var given *verity.Params
	if tf.noSuperblock {
		salt, err := verity.ParseHex(tf.salt)
		if err != nil {
			return usagef("--salt: %v", err)
		}
		if tf.dataBlocks == 0 {
			return usagef("--no-superblock needs --data-blocks (and --salt, --hash, block sizes as formatted)")
		}
		given = &verity.Params{HashType: 1, Algorithm: tf.alg, DataBlockSize: uint32(tf.dbs),
			HashBlockSize: uint32(tf.hbs), DataBlocks: tf.dataBlocks, Salt: salt}
	}
	if _, err := verity.VerifyFile(ctx, pos[0], pos[1], tf.offset, root, given); err != nil {
		return err
	}
	fmt.Fprintln(env.stdout, "Verification succeeded.")
	return nil
}

func verityDump(env *cliEnv, args []string) error {
	fs := newFlagSet(env, "verity dump", "verity dump HASH [flags]")
	offset := fs.Uint64("hash-offset", 0, "byte offset of the superblock on the hash device")
	asJSON := fs.Bool("json", false, "print the parameters as JSON")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		fs.Usage()
		return usagef("want HASH, got %d arguments", len(pos))
	}
	f, err := os.Open(pos[0])
	if err != nil {
		return err
	}
	defer f.Close()
	p, err := verity.OpenParams(f, *offset, nil, nil)
	if err != nil {
		return fmt.Errorf("%s: %w", pos[0], err)
	}
	if *asJSON {
		return writeJSON(env.stdout, p)
	}
	printVerityHeader(env.stdout, pos[0], p, false)
	return nil
}

// printVerityHeader prints p the way veritysetup format and dump do.
func printVerityHeader(w io.Writer, hashPath string, p *verity.Params, withRoot bool) {
	fmt.Fprintf(w, "VERITY header information for %s\n", hashPath)
	fmt.Fprintf(w, "UUID:            \t%s\n", p.UUID)
	fmt.Fprintf(w, "Hash type:       \t%d\n", p.HashType)
	fmt.Fprintf(w, "Data blocks:     \t%d\n", p.DataBlocks)
	fmt.Fprintf(w, "Data block size: \t%d\n", p.DataBlockSize)
	fmt.Fprintf(w, "Hash blocks:     \t%d\n", p.HashBlocks)
	fmt.Fprintf(w, "Hash block size: \t%d\n", p.HashBlockSize)
	fmt.Fprintf(w, "Hash algorithm:  \t%s\n", p.Algorithm)
	fmt.Fprintf(w, "Salt:            \t%s\n", p.Salt)
	if withRoot { // format prints these; dump, like veritysetup's, does not
		fmt.Fprintf(w, "Root hash:      \t%s\n", hex.EncodeToString(p.RootHash))
		fmt.Fprintf(w, "Hash device size: \t%s [bytes]\n", strconv.FormatUint(p.HashDeviceSize, 10))
	}
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return errors.Join(errors.New("writing JSON"), err)
	}
	return nil
}
