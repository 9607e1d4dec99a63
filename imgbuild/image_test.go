package imgbuild_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/enclave-storage/enclave-storage/imgbuild"
)

func TestWriteImageRefuses(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "nbd-parent")
	if err := os.WriteFile(script, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	ref := layout(t, appImage(t, "SERVER v1"))
	noEIF := build(t, ref, nil)
	_, err := imgbuild.WriteImage(context.Background(), noEIF, imgbuild.ImageOptions{Dest: "oci:" + dir + "/i", ParentBin: script})
	if err == nil || !strings.Contains(err.Error(), "EIF") {
		t.Errorf("without an EIF: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bzImage"), []byte(strings.Repeat("K", 4096)), 0o644); err != nil {
		t.Fatal(err)
	}
	withEIF := build(t, ref, func(o *imgbuild.Options) { o.Kernel, o.Init = filepath.Join(dir, "bzImage"), script })
	_, err = imgbuild.WriteImage(context.Background(), withEIF, imgbuild.ImageOptions{Dest: "oci:" + dir + "/i", ParentBin: script})
	if !errors.Is(err, imgbuild.ErrNotStatic) {
		t.Errorf("a shell script as nbd-parent: %v, want ErrNotStatic", err)
	}
}

func TestImageEntrypoint(t *testing.T) {
	for _, tc := range []struct{ size, want string }{
		{"", "/usr/bin/nbd-parent run --eif /enclave/enclave.eif --data-dir /var/lib/enclave --run-size " + imgbuild.DefaultRunSize},
		{"1G", "/usr/bin/nbd-parent run --eif /enclave/enclave.eif --data-dir /var/lib/enclave --run-size 1G"},
	} {
		// nbd-parent run's flag names (cmd/nbd-parent TestRunHelp).
		if ep := strings.Join(imgbuild.ImageEntrypoint(tc.size), " "); ep != tc.want {
			t.Errorf("ImageEntrypoint(%q) = %q, want %q", tc.size, ep, tc.want)
		}
	}
}
