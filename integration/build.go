package integration

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
)

// Tag is the build tag of in-VM tests.
const Tag = "integration"

// TestPackages returns the import paths of the packages in the module at
// moduleDir that have test files behind the integration build tag (that is,
// more test files with the tag than without), except the harness package
// itself. Any package can join the VM run by adding such a file.
func TestPackages(ctx context.Context, moduleDir string) ([]string, error) {
	const format = "{{.ImportPath}} {{len .TestGoFiles}} {{len .XTestGoFiles}}"
	list := func(tags ...string) (map[string]string, error) {
		args := append([]string{"list", "-e"}, tags...)
		out, err := goCmd(ctx, moduleDir, append(args, "-f", format, "./...")...)
		if err != nil {
			return nil, err
		}
		m := map[string]string{}
		sc := bufio.NewScanner(bytes.NewReader(out))
		for sc.Scan() {
			if path, counts, ok := strings.Cut(sc.Text(), " "); ok {
				m[path] = counts
			}
		}
		return m, nil
	}
	with, err := list("-tags", Tag)
	if err != nil {
		return nil, err
	}
	without, err := list()
	if err != nil {
		return nil, err
	}
	self, err := goCmd(ctx, moduleDir, "list", "-m")
	if err != nil {
		return nil, err
	}
	harness := strings.TrimSpace(string(self)) + "/integration"
	var pkgs []string
	for _, p := range sortedKeys(with) {
		if p != harness && with[p] != without[p] {
			pkgs = append(pkgs, p)
		}
	}
	return pkgs, nil
}

// TestBinary is a compiled test binary and the package it tests.
type TestBinary struct {
	Path string // the static test binary
	// Dir is the package's source directory. Like go test, the harness runs
	// the binary in a copy of it holding the testdata directory, so tests
	// can open testdata/... relative paths.
	Dir string
}

// BuildTests builds a static test binary (CGO_ENABLED=0, -tags integration)
// of each package into outDir and returns them by test name: the import path
// below the module, slashes turned into dashes ("dm", "integration-itest").
func BuildTests(ctx context.Context, moduleDir, outDir string, pkgs []string) (map[string]TestBinary, error) {
	self, err := goCmd(ctx, moduleDir, "list", "-m")
	if err != nil {
		return nil, err
	}
	prefix := strings.TrimSpace(string(self)) + "/"
	bins := map[string]TestBinary{}
	for _, p := range pkgs {
		name := strings.TrimPrefix(strings.TrimPrefix(p, prefix), "./")
		name = strings.ReplaceAll(strings.Trim(name, "/"), "/", "-")
		bin := filepath.Join(outDir, name+".test")
		if _, err := goCmd(ctx, moduleDir, "test", "-c", "-tags", Tag, "-o", bin, p); err != nil {
			return nil, err
		}
		dir, err := goCmd(ctx, moduleDir, "list", "-f", "{{.Dir}}", p)
		if err != nil {
			return nil, err
		}
		bins[name] = TestBinary{Path: bin, Dir: strings.TrimSpace(string(dir))}
	}
	return bins, nil
}

// BuildCommands builds static binaries of the main packages ./cmd/NAME for
// each name into outDir and returns them by name. A name "NAME+TAG" builds
// ./cmd/NAME with the build tag TAG into the binary NAME-TAG (the e2e tests
// use nbd-enclave+fakensm: nbd-enclave with a test NSM). A name with a
// slash is a main package's directory in the module instead, built into
// its base name (integration/fake-nitro-cli).
func BuildCommands(ctx context.Context, moduleDir, outDir string, names []string) (map[string]string, error) {
	bins := map[string]string{}
	for _, n := range names {
		pkg, tag, tagged := strings.Cut(n, "+")
		args := []string{"build", "-trimpath"}
		src, out := CommandDir(pkg), path.Base(pkg)
		if tagged {
			args = append(args, "-tags", tag)
			out += "-" + tag
		}
		bin := filepath.Join(outDir, out)
		if _, err := goCmd(ctx, moduleDir, append(args, "-o", bin, "./"+src)...); err != nil {
			return nil, err
		}
		bins[out] = bin
	}
	return bins, nil
}

// CommandDir is the package directory of a BuildCommands name (without
// its +TAG): cmd/NAME, or the name itself when it holds a slash.
func CommandDir(name string) string {
	if strings.Contains(name, "/") {
		return name
	}
	return "cmd/" + name
}

// goCmd runs the go tool with cgo off (static binaries for the initramfs).
func goCmd(ctx context.Context, dir string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("integration: go %s: %w\n%s", strings.Join(args, " "), err, stderr.Bytes())
	}
	return out, nil
}
