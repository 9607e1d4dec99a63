package integration

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/enclave-storage/enclave-storage/eif"
)

// TestExtractEIF: the kernel and cmdline come back as the EIF holds them,
// and the initrd is the ramdisk sections in order, then zero padding to a
// 4-byte boundary (where the kernel looks for the next newc header), then
// the extra archives.
func TestExtractEIF(t *testing.T) {
	dir := t.TempDir()
	kernel := bytes.Repeat([]byte("bzImage!"), 1000)
	rd := [][]byte{[]byte("bootstrap"), []byte("the app ramdisk, 29 bytes long")} // 38 bytes: 2 of padding
	spec := &eif.Spec{
		Kernel:  bytes.NewReader(kernel),
		Cmdline: "console=ttyS0 reboot=k enclave_storage.verity_root=ab",
		Metadata: eif.Metadata{ImageName: "app", ImageVersion: "1", BuildMetadata: eif.BuildInfo{
			BuildTime: eif.FormatBuildTime(time.Unix(0, 0)), BuildTool: "test", BuildToolVersion: "0",
			OperatingSystem: "Linux", KernelVersion: "6.1"}},
	}
	for _, r := range rd {
		spec.Ramdisks = append(spec.Ramdisks, bytes.NewReader(r))
	}
	var buf bytes.Buffer
	if _, err := eif.Build(context.Background(), &buf, spec); err != nil {
		t.Fatal(err)
	}
	eifPath, extra := filepath.Join(dir, "test.eif"), filepath.Join(dir, "extra.cpio")
	if err := os.WriteFile(eifPath, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(extra, []byte("EXTRA"), 0o644); err != nil {
		t.Fatal(err)
	}
	b, err := ExtractEIF(context.Background(), eifPath, dir, extra)
	if err != nil {
		t.Fatal(err)
	}
	if b.Cmdline != spec.Cmdline {
		t.Errorf("cmdline %q, want %q", b.Cmdline, spec.Cmdline)
	}
	if got, _ := os.ReadFile(b.Kernel); !bytes.Equal(got, kernel) {
		t.Errorf("kernel: %d bytes differ from the %d put in", len(got), len(kernel))
	}
	want := slices.Concat(rd[0], rd[1], make([]byte, (4-(len(rd[0])+len(rd[1]))%4)%4), []byte("EXTRA"))
	if got, _ := os.ReadFile(b.Initrd); !bytes.Equal(got, want) {
		t.Errorf("initrd %q, want %q", got, want)
	}
	if !slices.Equal(b.Ramdisks, []int64{int64(len(rd[0])), int64(len(rd[1]))}) {
		t.Errorf("ramdisk sizes %v", b.Ramdisks)
	}
	if _, err := ExtractEIF(context.Background(), extra, dir); err == nil {
		t.Error("ExtractEIF accepted a file that is not an EIF")
	}
}
