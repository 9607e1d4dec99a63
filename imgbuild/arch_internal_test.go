package imgbuild

import (
	"bytes"
	"testing"

	"github.com/enclave-storage/enclave-storage/eif"
)

func TestEIFFlags(t *testing.T) {
	arm := make([]byte, 64)
	copy(arm[56:], "ARM\x64")
	x86 := bytes.Repeat([]byte("K"), 64)
	for _, tc := range []struct {
		name     string
		kernel   []byte
		platform string
		want     uint16
		wantErr  bool
	}{
		{"arm64 kernel, arm64 image", arm, "linux/arm64/v8", eif.FlagARM64, false},
		{"x86 kernel, amd64 image", x86, "linux/amd64", 0, false},
		{"arm64 kernel, amd64 image", arm, "linux/amd64", 0, true},
		{"x86 kernel, arm64 image", x86, "linux/arm64", 0, true},
		{"no platform recorded", arm, "", eif.FlagARM64, false},
	} {
		got, err := eifFlags(bytes.NewReader(tc.kernel), tc.platform)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("%s: %#x %v, want %#x error %v", tc.name, got, err, tc.want, tc.wantErr)
		}
	}
}
