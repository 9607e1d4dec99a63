package keys

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestRandom(t *testing.T) {
	ctx := context.Background()
	a, err := Random{}.Key(ctx, "run")
	if err != nil {
		t.Fatal(err)
	}
	b, err := Random{}.Key(ctx, "run")
	if err != nil {
		t.Fatal(err)
	}
	if len(a) != DefaultRandomSize || len(b) != DefaultRandomSize {
		t.Fatalf("lengths %d, %d; want %d", len(a), len(b), DefaultRandomSize)
	}
	if bytes.Equal(a, b) {
		t.Fatal("two Random keys are equal")
	}
	c, err := Random{Size: 17}.Key(ctx, "run")
	if err != nil || len(c) != 17 {
		t.Fatalf("Size 17: %d bytes, %v", len(c), err)
	}
	if _, err := (Random{Size: -1}).Key(ctx, "run"); !errors.Is(err, ErrKeyTooLarge) {
		t.Fatalf("Size -1: %v, want ErrKeyTooLarge", err)
	}
}

func TestFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, data []byte, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil { // umask-proof
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name    string
		path    string
		want    []byte
		wantErr error
	}{
		{"owner only", write("ok", []byte("secret\n"), 0o600), []byte("secret\n"), nil},
		{"read only owner", write("ro", []byte{0, 1, 2}, 0o400), []byte{0, 1, 2}, nil},
		{"group readable", write("g", []byte("x"), 0o640), nil, ErrInsecureKeyFile},
		{"world readable", write("w", []byte("x"), 0o604), nil, ErrInsecureKeyFile},
		{"group writable", write("gw", []byte("x"), 0o620), nil, ErrInsecureKeyFile},
		{"empty", write("e", nil, 0o600), nil, ErrEmptyKey},
		{"directory", dir, nil, ErrInsecureKeyFile},
		{"missing", filepath.Join(dir, "nope"), nil, os.ErrNotExist},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := File{Path: tt.path}.Key(context.Background(), "run")
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				if !bytes.Contains([]byte(err.Error()), []byte(filepath.Base(tt.path))) {
					t.Errorf("error %q does not name the file", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tt.want) {
				t.Fatalf("key = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestEnv(t *testing.T) {
	t.Setenv("KEYS_TEST_KEY", "hunter2")
	k, err := Env{Name: "KEYS_TEST_KEY"}.Key(context.Background(), "run")
	if err != nil || string(k) != "hunter2" {
		t.Fatalf("got %q, %v", k, err)
	}
	if _, err := (Env{Name: "KEYS_TEST_UNSET_VARIABLE"}).Key(context.Background(), "run"); !errors.Is(err, ErrEmptyKey) {
		t.Fatalf("unset: %v, want ErrEmptyKey", err)
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		spec    string
		want    Provider
		wantErr bool
	}{
		{"random:", Random{}, false},
		{"random:32", Random{Size: 32}, false},
		{"file:/etc/enclave/key", File{Path: "/etc/enclave/key"}, false},
		{"file:rel/path:with:colons", File{Path: "rel/path:with:colons"}, false},
		{"env:RUN_KEY", Env{Name: "RUN_KEY"}, false},
		{"random:0", nil, true},
		{"random:x", nil, true},
		{"file:", nil, true},
		{"env:", nil, true},
		{"kms:arn", nil, true},
		{"/etc/key", nil, true},
		{"", nil, true},
	}
	for _, tt := range tests {
		got, err := Parse(tt.spec)
		if tt.wantErr {
			if !errors.Is(err, ErrBadSpec) {
				t.Errorf("Parse(%q) err = %v, want ErrBadSpec", tt.spec, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("Parse(%q) = %#v, %v; want %#v", tt.spec, got, err, tt.want)
		}
	}
}

func TestCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, p := range []Provider{Random{}, File{Path: "/nonexistent"}, Env{Name: "HOME"}} {
		if _, err := p.Key(ctx, "run"); !errors.Is(err, context.Canceled) {
			t.Errorf("%T: err = %v, want context.Canceled", p, err)
		}
	}
}
