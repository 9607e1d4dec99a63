package overlay

import (
	"errors"
	"testing"
)

func TestOptionsData(t *testing.T) {
	tests := []struct {
		name    string
		o       Options
		want    string
		wantErr error
	}{
		{"enclave root", Options{Lower: []string{"/mnt/lower"}, Upper: "/mnt/upper/root", Work: "/mnt/upper/work"},
			"lowerdir=/mnt/lower,upperdir=/mnt/upper/root,workdir=/mnt/upper/work", nil},
		{"two lowers", Options{Lower: []string{"/a", "/b"}, Upper: "/u", Work: "/w"},
			"lowerdir=/a:/b,upperdir=/u,workdir=/w", nil},
		{"read-only", Options{Lower: []string{"/a", "/b"}}, "lowerdir=/a:/b", nil},
		{"read-only single lower", Options{Lower: []string{"/a"}}, "", nil},
		{"no lower", Options{Upper: "/u", Work: "/w"}, "", nil},
		{"upper without work", Options{Lower: []string{"/a"}, Upper: "/u"}, "", nil},
		{"comma", Options{Lower: []string{"/a,upperdir=/etc"}, Upper: "/u", Work: "/w"}, "", ErrBadPath},
		{"colon", Options{Lower: []string{"/a:b"}, Upper: "/u", Work: "/w"}, "", ErrBadPath},
		{"backslash", Options{Lower: []string{"/a"}, Upper: "/u\\", Work: "/w"}, "", ErrBadPath},
		{"relative", Options{Lower: []string{"a"}, Upper: "/u", Work: "/w"}, "", ErrBadPath},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.o.Data()
			if tt.want == "" {
				if err == nil {
					t.Fatalf("Data() = %q, want an error", got)
				}
				if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
					t.Fatalf("Data() error %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("Data() = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}
