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

const testARN = "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"

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
		{"kms:" + testARN, KMS{KeyARN: testARN, Partition: "aws", Region: "eu-west-1", CID: 3, ProxyPort: 8000, CredentialsPort: 8001}, false},
		{"kms:" + testARN + ",cid=1,port=9000,credentials-port=9001,ca=/etc/ca.pem",
			KMS{KeyARN: testARN, Partition: "aws", Region: "eu-west-1", CID: 1, ProxyPort: 9000, CredentialsPort: 9001, CAFile: "/etc/ca.pem"},
			!testCAOption}, // a test hook: refused unless built with -tags fakensm
		{"kms:" + testARN + ",cid=1,port=9000,credentials-port=9001",
			KMS{KeyARN: testARN, Partition: "aws", Region: "eu-west-1", CID: 1, ProxyPort: 9000, CredentialsPort: 9001}, false},
		{"kms:arn:aws-cn:kms:cn-north-1:111122223333:alias/run", KMS{KeyARN: "arn:aws-cn:kms:cn-north-1:111122223333:alias/run", Partition: "aws-cn", Region: "cn-north-1", CID: 3, ProxyPort: 8000, CredentialsPort: 8001}, false},
		{"kms:arn:aws:s3:eu-west-1:111122223333:key/x", nil, true},
		{"kms:arn:aws:kms:eu-west-1:1111:key/x", nil, true},
		{"kms:arn:aws:kms:EU:111122223333:key/x", nil, true},
		{"kms:" + testARN + ",port=0", nil, true},
		{"kms:" + testARN + ",port=x", nil, true},
		{"kms:" + testARN + ",ca=rel.pem", nil, true},
		{"kms:" + testARN + ",proxy=1", nil, true},
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

func TestKMS(t *testing.T) {
	k, err := Parse("kms:" + testARN)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k.Key(context.Background(), "run"); !errors.Is(err, ErrSealedKey) {
		t.Errorf("Key = %v, want ErrSealedKey", err)
	}
	if h := k.(KMS).Host(); h != "kms.eu-west-1.amazonaws.com" {
		t.Errorf("Host = %q", h)
	}
	if h := (KMS{Partition: "aws-cn", Region: "cn-north-1"}).Host(); h != "kms.cn-north-1.amazonaws.com.cn" {
		t.Errorf("Host = %q", h)
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
