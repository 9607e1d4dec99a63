//go:build linux

package nsm

import (
	"context"
	"errors"
	"os"
	"testing"
	"unsafe"
)

// TestIoctlNumber: _IOWR(0x0A, 0, 32) as the nsm-api driver computes it
// with nix's request_code_readwrite!.
func TestIoctlNumber(t *testing.T) {
	if unsafe.Sizeof(uintptr(0)) != 8 {
		t.Skip("the number is for 64-bit architectures")
	}
	if ioctlRequest != 0xc0200a00 {
		t.Fatalf("NSM_IOCTL_REQUEST = %#x, want 0xc0200a00", ioctlRequest)
	}
}

// TestOpenOutsideEnclave: without /dev/nsm, Open fails with ErrNotExist.
func TestOpenOutsideEnclave(t *testing.T) {
	if _, err := os.Stat(DevicePath); err == nil {
		t.Skipf("%s exists: running in an enclave", DevicePath)
	}
	if _, err := Open(); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Open: %v, want ErrNotExist", err)
	}
}

// TestDeviceAttest runs only inside a Nitro Enclave.
func TestDeviceAttest(t *testing.T) {
	d, err := Open()
	if err != nil {
		t.Skipf("no NSM device: %v", err)
	}
	defer d.Close()
	doc, err := d.Attest(context.Background(), Request{Nonce: []byte("nonce")})
	if err != nil {
		t.Fatal(err)
	}
	d0, err := Parse(doc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(doc, AWSRoots(), d0.Timestamp); err != nil {
		t.Fatal(err)
	}
}
