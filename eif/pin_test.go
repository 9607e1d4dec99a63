package eif

import (
	"bytes"
	"context"
	"errors"
	"github.com/enclave-storage/enclave-storage/pin"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

func TestPinCmdline(t *testing.T) {
	root := []byte{0xde, 0xad, 0xbe, 0xef}
	tests := []struct {
		base, want string
		wantErr    bool
	}{
		{"console=ttyS0", "console=ttyS0 enclave_storage.verity_root=deadbeef", false},
		{"  console=ttyS0  ", "console=ttyS0 enclave_storage.verity_root=deadbeef", false},
		{"", "enclave_storage.verity_root=deadbeef", false},
		{"a enclave_storage.verity_root=00", "", true},
		{"enclave_storage.verity_root", "", true},
	}
	for _, tt := range tests {
		got, err := PinCmdline(tt.base, root)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("PinCmdline(%q) = %q, %v", tt.base, got, err)
		}
		if err == nil {
			back, err := pin.VerityRoot(got)
			if err != nil || !bytes.Equal(back, root) {
				t.Errorf("pin.VerityRoot(%q) = %x, %v", got, back, err)
			}
		}
	}
	if _, err := PinCmdline("x", nil); !errors.Is(err, ErrInvalidSpec) {
		t.Errorf("empty hash: %v", err)
	}
	for _, c := range []struct {
		cmdline string
		want    error
	}{
		{"console=ttyS0", pin.ErrNoVerityRoot},
		{"enclave_storage.verity_root_x=ab", pin.ErrNoVerityRoot},
		{"enclave_storage.verity_root=zz", nil},
		{"enclave_storage.verity_root=", nil},
		{"enclave_storage.verity_root=ab enclave_storage.verity_root=ab", nil},
	} {
		_, err := pin.VerityRoot(c.cmdline)
		if err == nil || (c.want != nil && !errors.Is(err, c.want)) {
			t.Errorf("pin.VerityRoot(%q): %v, want %v", c.cmdline, err, c.want)
		}
	}
}

func appRamdisk(t *testing.T, verity string) []byte {
	t.Helper()
	a := AppRamdisk{Enclave: []byte("\x7fELF fake nbd-enclave"), VerityJSON: []byte(verity), ConfigJSON: []byte(`{"exports":["root"]}`), ModTime: 1700000000}
	var buf bytes.Buffer
	if err := a.Write(context.Background(), &buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestPinnedMeasurements builds EIFs that differ only in the verity root
// hash and checks which PCRs change, then extracts the app ramdisk from
// the EIF with GNU cpio to check its contents.
func TestPinnedMeasurements(t *testing.T) {
	boot := []byte("bootstrap ramdisk")
	mk := func(root byte) ([]byte, PCRs) {
		verity := `{"root_hash":"` + string("0123456789abcdef"[root&15]) + `0"}`
		cmd, err := PinCmdline("console=ttyS0", []byte{root << 4})
		if err != nil {
			t.Fatal(err)
		}
		s := testSpec(boot, appRamdisk(t, verity))
		s.Cmdline = cmd
		return build(t, s)
	}
	img1, p1 := mk(1)
	_, p2 := mk(2)
	if bytes.Equal(p1.PCR0, p2.PCR0) || bytes.Equal(p1.PCR1, p2.PCR1) || bytes.Equal(p1.PCR2, p2.PCR2) {
		t.Fatalf("a different root hash must change PCR0 (all), PCR1 (cmdline) and PCR2 (verity.json):\n%+v\n%+v", p1, p2)
	}
	// Only the ramdisk's verity.json differs: PCR1 stays.
	cmd, _ := PinCmdline("console=ttyS0", []byte{0x10})
	s := testSpec(boot, appRamdisk(t, `{"root_hash":"ff"}`))
	s.Cmdline = cmd
	_, p3 := build(t, s)
	if !bytes.Equal(p1.PCR1, p3.PCR1) || bytes.Equal(p1.PCR2, p3.PCR2) {
		t.Fatalf("ramdisk change: PCR1 must stay, PCR2 must change:\n%+v\n%+v", p1, p3)
	}

	f, err := Read(bytes.NewReader(img1), int64(len(img1)))
	if err != nil {
		t.Fatal(err)
	}
	root, err := pin.VerityRoot(f.Cmdline)
	if err != nil || !bytes.Equal(root, []byte{0x10}) {
		t.Fatalf("root from cmdline: %x %v", root, err)
	}
	cpioBin, err := exec.LookPath("cpio")
	if err != nil {
		t.Skip("cpio not installed (apt-get install cpio)")
	}
	last := f.Sections[len(f.Sections)-1]
	if last.Type != SectionRamdisk {
		t.Fatalf("last section is %v", last.Type)
	}
	dir := t.TempDir()
	cmdx := exec.Command(cpioBin, "-i", "--quiet", "--make-directories", "--no-absolute-filenames", "--nonmatching", "dev/console")
	cmdx.Dir = dir
	cmdx.Stdin = io.NewSectionReader(bytes.NewReader(img1), last.DataOffset(), last.Size)
	if out, err := cmdx.CombinedOutput(); err != nil {
		t.Fatalf("cpio -i: %v\n%s", err, out)
	}
	for name, want := range map[string]string{
		RamdiskVerityPath:  `{"root_hash":"10"}`,
		RamdiskConfigPath:  `{"exports":["root"]}`,
		RamdiskEnclavePath: "\x7fELF fake nbd-enclave",
	} {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || string(got) != want {
			t.Errorf("%s: %q %v", name, got, err)
		}
	}
	if l, err := os.Readlink(filepath.Join(dir, RamdiskInitPath)); err != nil || l != RamdiskEnclavePath {
		t.Errorf("init: %q %v", l, err)
	}
}

func TestAppRamdiskErrors(t *testing.T) {
	for _, a := range []AppRamdisk{
		{VerityJSON: []byte(`{}`)},
		{Enclave: []byte("x"), VerityJSON: []byte(`{`)},
		{Enclave: []byte("x"), VerityJSON: []byte(`{}`), ConfigJSON: []byte("nope")},
	} {
		if err := a.Write(context.Background(), io.Discard); !errors.Is(err, ErrInvalidSpec) {
			t.Errorf("%+v: %v", a, err)
		}
	}
}
