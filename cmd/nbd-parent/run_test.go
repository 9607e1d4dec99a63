package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mdlayher/vsock"
)

func TestRunHelp(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"run", "--help"}, &out, &errb); code != 0 {
		t.Fatalf("run --help exited %d", code)
	}
	// make demo and the image's entrypoint use these flag names.
	for _, want := range []string{"-eif", "-data-dir", "-run-size", "-cpu-count", "-memory", "-enclave-cid", "-debug-mode", "-stop-grace", "-listen", "-metrics-addr", "-nitro-cli", "-forward", "-credentials", "-region",
		"ENCLAVE_CPU_COUNT", "ENCLAVE_MEMORY_MIB", "ENCLAVE_CID", "ENCLAVE_DEBUG",
		"docker run --device /dev/nitro_enclaves -v data:/var/lib/enclave IMAGE", "/healthz", "4  the enclave vanished"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("run --help lacks %q", want)
		}
	}
	out.Reset()
	run(context.Background(), []string{"--help"}, &out, &errb)
	if !strings.Contains(out.String(), "nbd-parent run [flags]") {
		t.Error("nbd-parent --help does not mention run")
	}
}

// enclaveFiles writes an EIF of 3 MiB and a rootfs.img next to it.
func enclaveFiles(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	eif := filepath.Join(dir, "enclave.eif")
	os.WriteFile(eif, make([]byte, 3<<20), 0o644)
	os.WriteFile(filepath.Join(dir, "rootfs.img"), make([]byte, 4096), 0o644)
	return eif
}

func TestRunUsageErrors(t *testing.T) {
	eif := enclaveFiles(t)
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"stray argument", nil, []string{"now"}, "unexpected arguments"},
		{"bad run size", nil, []string{"--run-size", "big"}, "--run-size"},
		{"bad env", map[string]string{"ENCLAVE_CPU_COUNT": "two"}, nil, `$ENCLAVE_CPU_COUNT="two"`},
		{"bad debug env", map[string]string{"ENCLAVE_DEBUG": "yes please"}, nil, "ENCLAVE_DEBUG"},
		{"big cid", nil, []string{"--enclave-cid", "4294967296"}, "32-bit"},
		{"no EIF", nil, []string{"--eif", filepath.Join(t.TempDir(), "none.eif")}, "EIF"},
		{"little memory", map[string]string{"ENCLAVE_MEMORY_MIB": "8"}, []string{"--eif", eif}, "at least 12 MiB"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			var out, errb bytes.Buffer
			args := append([]string{"run", "--data-dir", t.TempDir()}, tc.args...)
			if code := run(context.Background(), args, &out, &errb); code != 2 {
				t.Errorf("exit %d, want 2", code)
			}
			if !strings.Contains(errb.String(), tc.want) {
				t.Errorf("stderr lacks %q:\n%s", tc.want, errb.String())
			}
		})
	}
}

// TestRunWithFakeNitroCLI runs the subcommand with a nitro-cli that
// records its arguments: flags and environment reach run-enclave, and
// an enclave nitro-cli does not list a moment later (and that never
// opened its control channel) ends the run with exit status 4.
func TestRunWithFakeNitroCLI(t *testing.T) {
	dir := t.TempDir()
	argv := filepath.Join(dir, "argv")
	script := filepath.Join(dir, "nitro-cli")
	os.WriteFile(script, []byte(`#!/bin/sh
echo "$*" >>`+argv+`
case "$1" in
run-enclave) printf '{"EnclaveName":"e","EnclaveID":"i-1-enc2","ProcessID":7,"EnclaveCID":%s,"NumberOfCPUs":3,"CPUIDs":[1,2,3],"MemoryMiB":64}\n' "$9" ;;
describe-enclaves) echo '[]' ;;
*) exit 3 ;;
esac
`), 0o755)
	port := 20000 + uint32(os.Getpid()%20000)
	if l, err := vsock.Listen(port, nil); err != nil {
		t.Skipf("no vsock here: %v", err)
	} else {
		l.Close()
	}
	t.Setenv("ENCLAVE_CPU_COUNT", "3")
	t.Setenv("ENCLAVE_CID", "99") // the flag wins
	data := filepath.Join(dir, "data")
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"run", "--eif", enclaveFiles(t), "--data-dir", data, "--run-size", "1M",
		"--enclave-cid", "21", "--memory", "64", "--nitro-cli", script, "--listen", fmt.Sprintf("vsock://:%d", port)}, &out, &errb)
	if code != 4 {
		t.Errorf("exit %d, want 4 (vanished)\n%s", code, errb.String())
	}
	b, _ := os.ReadFile(argv)
	if first, _, _ := strings.Cut(string(b), "\n"); !strings.HasPrefix(first, "run-enclave --eif-path ") || !strings.HasSuffix(first, "enclave.eif --cpu-count 3 --memory 64 --enclave-cid 21") {
		t.Errorf("nitro-cli calls:\n%s", b)
	}
	if fi, err := os.Stat(filepath.Join(data, "run.img")); err != nil || fi.Size() != 1<<20 {
		t.Errorf("run image: %v, %v", fi, err)
	}
	for _, want := range []string{"enclave_id=i-1-enc2", `how=vanished exit_status=4`} {
		if !strings.Contains(errb.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, errb.String())
		}
	}
}
