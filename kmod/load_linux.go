//go:build linux

package kmod

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Load loads the modules listed in root's OrderPath, in order, with
// finit_module(2), and returns the names of those it loaded (a module
// already loaded is not among them). A missing order file means the
// kernel needs no modules: nothing is loaded and the error is nil. A
// module that fails to load stops Load with an error naming it.
func Load(ctx context.Context, root string) ([]string, error) {
	f, err := os.Open(filepath.Join(root, OrderPath))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("kmod: %w", err)
	}
	paths, err := ParseOrder(f)
	f.Close()
	if err != nil {
		return nil, err
	}
	var loaded []string
	for _, p := range paths {
		if err := ctx.Err(); err != nil {
			return loaded, err
		}
		ok, err := LoadFile(filepath.Join(root, p))
		if err != nil {
			return loaded, err
		}
		if ok {
			loaded = append(loaded, NameOf(p))
		}
	}
	return loaded, nil
}

// LoadFile loads one uncompressed module file with finit_module(2). It
// reports false, and no error, when the kernel already has the module.
func LoadFile(file string) (bool, error) {
	name := NameOf(file)
	f, err := os.Open(file)
	if err != nil {
		return false, fmt.Errorf("kmod: module %s: %w", name, err)
	}
	defer f.Close()
	err = unix.FinitModule(int(f.Fd()), "", 0)
	if errors.Is(err, unix.EEXIST) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("kmod: loading module %s (%s): %w", name, file, err)
	}
	return true, nil
}
