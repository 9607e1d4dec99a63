package pin

import (
	"bytes"
	"errors"
	"testing"
)

func TestVerityRoot(t *testing.T) {
	tests := []struct {
		cmdline string
		want    []byte
		err     error // nil: any error when want is nil
	}{
		{"console=ttyS0 enclave_storage.verity_root=abcd quiet", []byte{0xab, 0xcd}, nil},
		{"enclave_storage.verity_root=00", []byte{0}, nil},
		{"console=ttyS0", nil, ErrNoVerityRoot},
		{"enclave_storage.verity_root_x=ab", nil, ErrNoVerityRoot},
		{"enclave_storage.verity_root", nil, ErrNoVerityRoot},
		{"enclave_storage.verity_root=ab enclave_storage.verity_root=ab", nil, nil},
		{"enclave_storage.verity_root=zz", nil, nil},
		{"enclave_storage.verity_root=", nil, nil},
	}
	for _, tt := range tests {
		got, err := VerityRoot(tt.cmdline)
		switch {
		case tt.want != nil && (err != nil || !bytes.Equal(got, tt.want)):
			t.Errorf("VerityRoot(%q) = %x, %v; want %x", tt.cmdline, got, err, tt.want)
		case tt.want == nil && err == nil:
			t.Errorf("VerityRoot(%q) = %x, want an error", tt.cmdline, got)
		case tt.err != nil && !errors.Is(err, tt.err):
			t.Errorf("VerityRoot(%q): %v, want %v", tt.cmdline, err, tt.err)
		}
	}
}

func FuzzVerityRoot(f *testing.F) {
	f.Add("console=ttyS0 enclave_storage.verity_root=abcd")
	f.Fuzz(func(t *testing.T, cmdline string) {
		root, err := VerityRoot(cmdline)
		if err == nil && len(root) == 0 {
			t.Fatal("accepted an empty root hash")
		}
	})
}
