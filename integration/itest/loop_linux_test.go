//go:build linux

package itest

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
)

func TestAttachLoop(t *testing.T) {
	NeedRoot(t)
	NeedPath(t, "/dev/loop-control")
	ctx := context.Background()
	file := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(file, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name     string
		readOnly bool
	}{{"read-write", false}, {"read-only", true}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := AttachLoop(ctx, file, tt.readOnly)
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			f, err := os.OpenFile(l.Path, os.O_RDWR, 0)
			want := bytes.Repeat([]byte(tt.name), 512)[:4096]
			if tt.readOnly {
				// Depending on the kernel, the open or the write fails.
				if err == nil {
					defer f.Close()
					if _, err := f.WriteAt(want, 4096); err == nil {
						t.Fatalf("write to read-only %s succeeded", l.Path)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.WriteAt(want, 4096); err != nil {
				t.Fatal(err)
			}
			if err := f.Sync(); err != nil {
				t.Fatal(err)
			}
			got := make([]byte, len(want))
			raw, err := os.Open(file)
			if err != nil {
				t.Fatal(err)
			}
			defer raw.Close()
			if _, err := raw.ReadAt(got, 4096); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("data written through %s is not in %s", l.Path, file)
			}
		})
	}
}
