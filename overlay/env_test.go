package overlay

import (
	"slices"
	"testing"
)

func TestEnviron(t *testing.T) {
	tests := []struct {
		name string
		env  []string
		want []string
	}{
		{"none", nil, []string{"PATH=" + DefaultPath}},
		{"image without PATH", []string{"MODE=enclave", "HOME=/srv"}, []string{"MODE=enclave", "HOME=/srv", "PATH=" + DefaultPath}},
		{"image PATH kept", []string{"PATH=/app/bin", "X=1"}, []string{"PATH=/app/bin", "X=1"}},
		{"empty PATH is a PATH", []string{"PATH="}, []string{"PATH="}},
		{"PATHX is not PATH", []string{"PATHX=1"}, []string{"PATHX=1", "PATH=" + DefaultPath}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := slices.Clone(tt.env)
			if got := Environ(tt.env); !slices.Equal(got, tt.want) {
				t.Fatalf("Environ(%q) = %q, want %q", tt.env, got, tt.want)
			}
			if !slices.Equal(in, tt.env) {
				t.Fatalf("Environ modified its argument")
			}
		})
	}
}
