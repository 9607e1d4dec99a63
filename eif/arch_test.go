package eif

import (
	"bytes"
	"testing"
)

func TestKernelFlags(t *testing.T) {
	// An arm64 Image header (Documentation/arch/arm64/booting.rst): code0,
	// code1, text_offset, image_size, flags, res2..res4, magic "ARM\x64".
	arm := make([]byte, 64)
	copy(arm[56:], "ARM\x64")
	bz := make([]byte, 1024)
	copy(bz[0x202:], "HdrS")
	for _, tc := range []struct {
		name   string
		kernel []byte
		want   uint16
	}{
		{"arm64 Image", arm, FlagARM64},
		{"x86 bzImage", bz, 0},
		{"too short", []byte("ARM"), 0},
	} {
		if got := KernelFlags(bytes.NewReader(tc.kernel)); got != tc.want {
			t.Errorf("%s: %#x, want %#x", tc.name, got, tc.want)
		}
	}
}
