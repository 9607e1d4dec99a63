package nitrocli_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/enclave-storage/enclave-storage/nitrocli"
)

const sampleID = "i-abc12345def67890a-enc9876abcd543210ef12"

// fake returns an Exec running testdata/fake-nitro-cli in mode, and a
// function returning the argv of each call it received.
func fake(t *testing.T, mode string) (*nitrocli.Exec, func() [][]string) {
	t.Helper()
	if _, err := exec.LookPath("sh"); err != nil {
		t.Skip("sh not installed")
	}
	path, err := filepath.Abs("testdata/fake-nitro-cli")
	if err != nil {
		t.Fatal(err)
	}
	log := filepath.Join(t.TempDir(), "argv")
	t.Setenv("FAKE_NITRO_CLI_LOG", log)
	t.Setenv("FAKE_NITRO_CLI_MODE", mode)
	calls := func() [][]string {
		b, err := os.ReadFile(log)
		if err != nil {
			t.Fatal(err)
		}
		var out [][]string
		var cur []string
		for _, l := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
			if l == "--" {
				out = append(out, cur)
				cur = nil
				continue
			}
			cur = append(cur, l)
		}
		return out
	}
	return &nitrocli.Exec{Path: path}, calls
}

func TestRunEnclave(t *testing.T) {
	x, calls := fake(t, "")
	var stderr bytes.Buffer
	x.Stderr = &stderr
	ri, err := x.RunEnclave(context.Background(), nitrocli.RunOptions{EIFPath: "/enclave/enclave.eif", CPUCount: 4, MemoryMiB: 2048, CID: 16, Debug: true})
	if err != nil {
		t.Fatal(err)
	}
	want := nitrocli.RunInfo{EnclaveName: "command-executer", EnclaveID: sampleID, ProcessID: 12345, EnclaveCID: 16, NumberOfCPUs: 4, CPUIDs: []uint32{1, 5, 2, 6}, MemoryMiB: 2048}
	if !reflect.DeepEqual(ri, want) {
		t.Errorf("RunInfo = %+v, want %+v", ri, want)
	}
	wantArgv := [][]string{{"run-enclave", "--eif-path", "/enclave/enclave.eif", "--cpu-count", "4", "--memory", "2048", "--enclave-cid", "16", "--debug-mode"}}
	if got := calls(); !reflect.DeepEqual(got, wantArgv) {
		t.Errorf("argv = %q, want %q", got, wantArgv)
	}
	if !strings.Contains(stderr.String(), "Started enclave with enclave-cid: 16") {
		t.Errorf("stderr not passed on: %q", stderr.String())
	}
}

func TestRunOptionsArgs(t *testing.T) {
	for _, tc := range []struct {
		o    nitrocli.RunOptions
		want string
	}{
		{nitrocli.RunOptions{EIFPath: "a.eif", CPUCount: 2, MemoryMiB: 512}, "run-enclave --eif-path a.eif --cpu-count 2 --memory 512"},
		{nitrocli.RunOptions{EIFPath: "a.eif", CPUCount: 2, MemoryMiB: 512, CID: 4294967294}, "run-enclave --eif-path a.eif --cpu-count 2 --memory 512 --enclave-cid 4294967294"},
		{nitrocli.RunOptions{EIFPath: "a.eif", CPUCount: 1, MemoryMiB: 96, Debug: true}, "run-enclave --eif-path a.eif --cpu-count 1 --memory 96 --debug-mode"},
	} {
		if got := strings.Join(tc.o.Args(), " "); got != tc.want {
			t.Errorf("%+v.Args() = %q, want %q", tc.o, got, tc.want)
		}
	}
}

func TestDescribeTerminateConsole(t *testing.T) {
	x, calls := fake(t, "")
	ctx := context.Background()
	es, err := x.DescribeEnclaves(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []nitrocli.EnclaveInfo{{RunInfo: nitrocli.RunInfo{EnclaveName: "command-executer", EnclaveID: sampleID, ProcessID: 12345, EnclaveCID: 16, NumberOfCPUs: 4, CPUIDs: []uint32{1, 5, 2, 6}, MemoryMiB: 2048}, State: nitrocli.StateRunning, Flags: nitrocli.FlagsDebugMode}}
	if !reflect.DeepEqual(es, want) {
		t.Errorf("DescribeEnclaves = %+v, want %+v", es, want)
	}
	ti, err := x.TerminateEnclave(ctx, "i-1-enc2")
	if err != nil || ti != (nitrocli.TerminateInfo{EnclaveName: "command-executer", EnclaveID: "i-1-enc2", Terminated: true}) {
		t.Errorf("TerminateEnclave = %+v, %v", ti, err)
	}
	var console bytes.Buffer
	if err := x.Console(ctx, "i-1-enc2", &console); err != nil || !strings.Contains(console.String(), "Linux version") {
		t.Errorf("Console: %v, output %q", err, console.String())
	}
	wantArgv := [][]string{{"describe-enclaves"}, {"terminate-enclave", "--enclave-id", "i-1-enc2"}, {"console", "--enclave-id", "i-1-enc2"}}
	if got := calls(); !reflect.DeepEqual(got, wantArgv) {
		t.Errorf("argv = %q, want %q", got, wantArgv)
	}
}

func TestErrors(t *testing.T) {
	ctx := context.Background()
	run := nitrocli.RunOptions{EIFPath: "a.eif", CPUCount: 2, MemoryMiB: 64}
	t.Run("E26", func(t *testing.T) {
		x, _ := fake(t, "e26")
		_, err := x.RunEnclave(ctx, run)
		var ce *nitrocli.CommandError
		if !errors.As(err, &ce) || ce.Command != "run-enclave" || ce.ExitStatus != 26 || ce.Code != "E26" {
			t.Fatalf("err = %#v", err)
		}
		for _, s := range []string{"nitro-cli run-enclave", "exit status 26", "[ E26 ] Insufficient memory requested", "minimum memory should be 96 MB"} {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("%q lacks %q", err, s)
			}
		}
	})
	t.Run("garbage", func(t *testing.T) {
		x, _ := fake(t, "garbage")
		if _, err := x.RunEnclave(ctx, run); !errors.Is(err, nitrocli.ErrOutput) {
			t.Errorf("RunEnclave: %v, want ErrOutput", err)
		}
		if _, err := x.DescribeEnclaves(ctx); !errors.Is(err, nitrocli.ErrOutput) {
			t.Errorf("DescribeEnclaves: %v, want ErrOutput", err)
		}
		if _, err := x.TerminateEnclave(ctx, "x"); !errors.Is(err, nitrocli.ErrOutput) {
			t.Errorf("TerminateEnclave: %v, want ErrOutput", err)
		}
	})
	t.Run("huge", func(t *testing.T) {
		x, _ := fake(t, "huge")
		if _, err := x.DescribeEnclaves(ctx); !errors.Is(err, nitrocli.ErrOutput) || !strings.Contains(err.Error(), "more than") {
			t.Errorf("DescribeEnclaves: %v, want ErrOutput for its size", err)
		}
	})
	t.Run("killed", func(t *testing.T) {
		x, _ := fake(t, "die")
		_, err := x.DescribeEnclaves(ctx)
		var ce *nitrocli.CommandError
		if !errors.As(err, &ce) || ce.ExitStatus != -1 || ce.Code != "" || ce.Message != "killed" || !strings.Contains(err.Error(), "signal: killed") {
			t.Errorf("err = %v (%#v)", err, ce)
		}
	})
	t.Run("missing", func(t *testing.T) {
		x := &nitrocli.Exec{Path: filepath.Join(t.TempDir(), "nitro-cli")}
		_, err := x.DescribeEnclaves(ctx)
		var ce *nitrocli.CommandError
		if !errors.As(err, &ce) || !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "nitro-cli describe-enclaves") {
			t.Errorf("err = %v", err)
		}
	})
}

func TestErrorLine(t *testing.T) {
	for _, tc := range []struct{ in, code, line string }{
		{"Start allocating memory...\n[ E26 ] Insufficient memory requested.\n\nFor more details, please visit https://x\n", "E26", "[ E26 ] Insufficient memory requested."},
		{"Failed to connect | [ E39 ] Enclave process connection failure.\n", "E39", "Failed to connect | [ E39 ] Enclave process connection failure."},
		{"[ Exx ] no\nlast line\n\n", "", "last line"},
		{"[ E1234 ] too long\n", "", "[ E1234 ] too long"},
		{"", "", ""},
	} {
		code, line := nitrocli.ErrorLine([]byte(tc.in))
		if code != tc.code || line != tc.line {
			t.Errorf("ErrorLine(%q) = %q, %q; want %q, %q", tc.in, code, line, tc.code, tc.line)
		}
	}
}

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		ok       bool
	}{
		{"empty array", "[]\n", true},
		{"null", "null", false},
		{"object", "{}", false},
		{"no id", `[{"EnclaveCID":16}]`, false},
		{"trailing", "[] []", false},
		{"negative cid", `[{"EnclaveID":"i","EnclaveCID":-1}]`, false},
	} {
		_, err := nitrocli.ParseDescribe([]byte(tc.in))
		if (err == nil) != tc.ok {
			t.Errorf("ParseDescribe(%s): %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
	if _, err := nitrocli.ParseRunInfo([]byte(`{"EnclaveCID":16}`)); !errors.Is(err, nitrocli.ErrOutput) {
		t.Errorf("run info without EnclaveID: %v", err)
	}
	if _, err := nitrocli.ParseTerminate([]byte(`{"Terminated":true}`)); !errors.Is(err, nitrocli.ErrOutput) {
		t.Errorf("terminate info without EnclaveID: %v", err)
	}
}

func TestMinMemoryMiB(t *testing.T) {
	for _, tc := range []struct {
		size int64
		want uint64
	}{
		{0, 0}, {1, 4}, {1 << 20, 4}, {1<<20 + 1, 8}, {24 << 20, 96}, {30*(1<<20) - 5, 120},
	} {
		if got := nitrocli.MinMemoryMiB(tc.size); got != tc.want {
			t.Errorf("MinMemoryMiB(%d) = %d, want %d", tc.size, got, tc.want)
		}
		// nitro-cli's check: ENCLAVE_MEMORY_EIF_SIZE_RATIO * eif_size > requested_mem fails.
		if got := nitrocli.MinMemoryMiB(tc.size); 4*tc.size > int64(got)<<20 {
			t.Errorf("MinMemoryMiB(%d) = %d MiB would be refused by nitro-cli", tc.size, got)
		}
	}
}
