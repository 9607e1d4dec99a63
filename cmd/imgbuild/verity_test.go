package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func testEnv() (*cliEnv, *bytes.Buffer, *bytes.Buffer) {
	var out, errb bytes.Buffer
	return &cliEnv{stdout: &out, stderr: &errb, log: slog.New(slog.NewTextHandler(io.Discard, nil))}, &out, &errb
}

func TestVerityCLI(t *testing.T) {
	dir := t.TempDir()
	img := filepath.Join(dir, "rootfs.img")
	data := make([]byte, 300*4096)
	rand.NewChaCha8([32]byte{1}).Read(data)
	if err := os.WriteFile(img, data, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	off := "1228800"

	env, out, errb := testEnv()
	if rc := run(ctx, env, []string{"verity", "format", img, img, "--hash-offset", off, "--salt", "abcd"}); rc != 0 {
		t.Fatalf("format: rc %d: %s", rc, errb)
	}
	m := regexp.MustCompile(`Root hash:\s+([0-9a-f]{64})`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("no root hash in:\n%s", out)
	}
	root := m[1]
	for _, want := range []string{"Data blocks:     \t300\n", "Salt:            \tabcd\n", "Hash algorithm:  \tsha256\n"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("format output lacks %q:\n%s", want, out)
		}
	}

	env, out, errb = testEnv()
	if rc := run(ctx, env, []string{"verity", "verify", img, img, root, "--hash-offset", off}); rc != 0 || !strings.Contains(out.String(), "Verification succeeded") {
		t.Fatalf("verify: rc %d: %s%s", rc, out, errb)
	}

	env, out, _ = testEnv()
	if rc := run(ctx, env, []string{"verity", "dump", "--json", img, "--hash-offset", off}); rc != 0 {
		t.Fatalf("dump: rc %d", rc)
	}
	var p struct {
		DataBlocks uint64 `json:"data_blocks"`
		Salt       string `json:"salt"`
	}
	if err := json.Unmarshal(out.Bytes(), &p); err != nil || p.DataBlocks != 300 || p.Salt != "abcd" {
		t.Fatalf("dump --json: %v %+v\n%s", err, p, out)
	}

	// veritysetup, where present, accepts the tree and prints the same dump.
	if vs, err := exec.LookPath("veritysetup"); err == nil {
		if b, err := exec.Command(vs, "verify", img, img, root, "--hash-offset", off).CombinedOutput(); err != nil {
			t.Errorf("veritysetup verify: %v\n%s", err, b)
		}
		theirs, _ := exec.Command(vs, "dump", img, "--hash-offset", off).Output()
		env, ours, _ := testEnv()
		run(ctx, env, []string{"verity", "dump", img, "--hash-offset", off})
		if !bytes.Equal(theirs, ours.Bytes()) {
			t.Errorf("dump differs from veritysetup's:\n%s\nvs\n%s", ours, theirs)
		}
	}

	// A flipped data byte: exit 1 and the block named.
	f, _ := os.OpenFile(img, os.O_RDWR, 0)
	f.WriteAt([]byte{data[4096*7] ^ 1}, 4096*7)
	f.Close()
	env, _, errb = testEnv()
	if rc := run(ctx, env, []string{"verity", "verify", img, img, root, "--hash-offset", off}); rc != 1 || !strings.Contains(errb.String(), "data block 7 ") {
		t.Fatalf("corrupted verify: rc %d: %s", rc, errb)
	}
}

func TestVerityCLIUsage(t *testing.T) {
	tests := []struct {
		args []string
		rc   int
	}{
		{[]string{"verity"}, 2},
		{[]string{"verity", "--help"}, 0},
		{[]string{"verity", "frobnicate"}, 2},
		{[]string{"verity", "format", "only-one"}, 2},
		{[]string{"verity", "format", "a", "b", "--bogus"}, 2},
		{[]string{"verity", "verify", "a", "b", "nothex"}, 2},
		{[]string{"verity", "format", "/nonexistent/data", "/nonexistent/hash"}, 1},
		{[]string{"no-such-command"}, 2},
	}
	for _, tt := range tests {
		env, _, errb := testEnv()
		if rc := run(context.Background(), env, tt.args); rc != tt.rc {
			t.Errorf("%v: rc %d, want %d: %s", tt.args, rc, tt.rc, errb)
		}
	}
}
