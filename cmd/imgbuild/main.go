// Command imgbuild turns a container image into what an enclave boots from:
// a read-only filesystem image with a dm-verity hash tree appended, and an
// enclave image file (EIF) that pins the tree's root hash.
//
// Usage:
//
//	imgbuild [build] --in IMAGE [flags]   build rootfs.img, rootfs.verity.json, enclave.eif
//	imgbuild verity format|verify|dump    veritysetup-like tools over verity/
//	imgbuild describe FILE.eif            print an EIF's header, sections and PCRs
//
// Run "imgbuild help" or "imgbuild COMMAND --help" for details.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
)

// A subcommand is one verb of imgbuild. run receives the arguments after
// the verb and returns an error to print; flag.ErrHelp means usage was shown.
type subcommand struct {
	name    string
	summary string
	run     func(ctx context.Context, env *cliEnv, args []string) error
}

// cliEnv is what every subcommand writes to; tests replace it.
type cliEnv struct {
	stdout, stderr io.Writer
	log            *slog.Logger
}

// subcommands lists imgbuild's verbs. The first is the default verb, run
// when the first argument is a flag ("imgbuild --in app:latest").
func subcommands() []subcommand {
	return []subcommand{
		buildCommand(),
		verityCommand(),
		describeCommand(),
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	env := &cliEnv{
		stdout: os.Stdout,
		stderr: os.Stderr,
		log:    slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})),
	}
	os.Exit(run(ctx, env, os.Args[1:]))
}

// run dispatches args to a subcommand and maps its error to an exit code:
// 0 success, 1 failure, 2 usage error.
func run(ctx context.Context, env *cliEnv, args []string) int {
	cmds := subcommands()
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" || args[0] == "-help" {
		usage(env.stdout, cmds)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	cmd, rest := cmds[0], args
	found := false
	for _, c := range cmds {
		if c.name == args[0] {
			cmd, rest, found = c, args[1:], true
			break
		}
	}
	if !found && (len(args[0]) == 0 || args[0][0] != '-') {
		fmt.Fprintf(env.stderr, "imgbuild: unknown command %q\n", args[0])
		usage(env.stderr, cmds)
		return 2
	}
	err := cmd.run(ctx, env, rest)
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, new(usageError)):
		fmt.Fprintf(env.stderr, "imgbuild %s: %v\n", cmd.name, err)
		return 2
	default:
		fmt.Fprintf(env.stderr, "imgbuild %s: %v\n", cmd.name, err)
		return 1
	}
}

// usageError marks an error in the command line itself (exit status 2).
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error { return usageError{fmt.Sprintf(format, a...)} }

func usage(w io.Writer, cmds []subcommand) {
	fmt.Fprintln(w, "Usage: imgbuild COMMAND [flags] [args]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Commands:")
	for _, c := range cmds {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Run 'imgbuild COMMAND --help' for a command's flags.")
}

// newFlagSet returns a FlagSet that reports errors instead of exiting and
// prints its usage, headed by synopsis, to env.stderr.
func newFlagSet(env *cliEnv, name, synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	fs.Usage = func() {
		fmt.Fprintf(env.stderr, "Usage: imgbuild %s\n\nFlags:\n", synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args, allowing flags after positional arguments as
// veritysetup does ("format data.img hash.img --salt 00"), and returns the
// positional arguments. A bad flag becomes a usageError.
func parseFlags(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, usageError{err.Error()}
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		// flag.Parse stops at "--" (consumed) or at the first non-flag.
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}
