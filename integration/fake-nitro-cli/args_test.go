//go:build linux

package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func code(err error) int {
	var ce *cliError
	if errors.As(err, &ce) {
		return ce.code
	}
	if err != nil {
		return -1
	}
	return 0
}

func TestParseMemory(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want uint64
		code int
	}{
		{"512", 512, 0}, {"512M", 512, 0}, {"2G", 2048, 0}, {"1T", 1 << 20, 0},
		{"", 0, eInvalidArgument}, {"M", 0, eInvalidArgument}, {"5K", 0, eInvalidArgument}, {"5GiB", 0, eInvalidArgument},
	} {
		got, err := parseMemory(tc.in)
		if got != tc.want || code(err) != tc.code {
			t.Errorf("%q: %d, %v; want %d, E%d", tc.in, got, err, tc.want, tc.code)
		}
	}
}

func TestParseCID(t *testing.T) {
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{"16", true}, {"4", true}, {"4294967294", true},
		{"0", false}, {"1", false}, {"2", false}, {"3", false}, {"4294967295", false}, {"4294967296", false}, {"x", false},
	} {
		if _, err := parseCID(tc.in); (err == nil) != tc.ok {
			t.Errorf("%q: %v, want ok=%v", tc.in, err, tc.ok)
		}
	}
}

func TestEnclaveName(t *testing.T) {
	name := "app"
	for _, tc := range []struct {
		a     runArgs
		taken []string
		want  string
	}{
		{runArgs{EIFPath: "/x/enclave.eif"}, nil, "enclave"},
		{runArgs{EIFPath: "/x/enclave.eif"}, []string{"enclave", "enclave_1"}, "enclave_2"},
		{runArgs{EIFPath: "image"}, nil, "image"},
		{runArgs{EIFPath: "/x/enclave.eif", EnclaveName: &name}, []string{"app"}, "app_1"},
	} {
		if got := enclaveName(tc.a, tc.taken); got != tc.want {
			t.Errorf("%+v %v: %q, want %q", tc.a, tc.taken, got, tc.want)
		}
	}
}

func TestBootTimeout(t *testing.T) {
	for _, tc := range []struct {
		size int64
		mem  uint64
		want time.Duration
	}{
		{30 << 20, 512, 2 * time.Minute},
		{6 << 30, 100 << 10, 2 * time.Minute},
		{6<<30 + 1, 100<<10 + 1, 4 * time.Minute},
	} {
		if got := bootTimeout(tc.size, tc.mem); got != tc.want {
			t.Errorf("%d bytes, %d MiB: %v, want %v", tc.size, tc.mem, got, tc.want)
		}
	}
}

func TestParseRunArgs(t *testing.T) {
	dir := t.TempDir()
	conf := func(s string) string {
		p := filepath.Join(dir, strings.NewReplacer("{", "", "}", "", `"`, "", ":", "", ",", "").Replace(s)+".json")
		os.WriteFile(p, []byte(s), 0o600)
		return p
	}
	for _, tc := range []struct {
		args  []string
		code  int
		check func(runArgs) bool
	}{
		{[]string{"--eif-path", "e.eif", "--cpu-count", "2", "--memory", "1G", "--debug-mode"}, 0,
			func(a runArgs) bool {
				return a.EIFPath == "e.eif" && *a.CPUCount == 2 && a.MemoryMiB == 1024 && a.DebugMode
			}},
		{[]string{"--eif-path", "e.eif", "--cpu-ids", "1,3", "--memory", "64", "--enclave-cid", "16", "--attach-console"}, 0,
			func(a runArgs) bool { return len(a.CPUIDs) == 2 && *a.EnclaveCID == 16 && a.DebugMode }},
		{[]string{"--cpu-count", "2", "--memory", "64"}, eMissingArgument, nil},
		{[]string{"--eif-path", "e.eif", "--memory", "64"}, eMissingArgument, nil},
		{[]string{"--eif-path", "e.eif", "--cpu-count", "2", "--cpu-ids", "1", "--memory", "64"}, eConflictingArgument, nil},
		{[]string{"--eif-path", "e.eif", "--cpu-count", "2", "--memory", "64", "--enclave-cid", "3"}, eInvalidArgument, nil},
		{[]string{"--config", conf(`{"eif_path":"c.eif","memory_mib":512,"cpu_count":2,"attach_console":true}`)}, 0,
			func(a runArgs) bool { return a.EIFPath == "c.eif" && a.MemoryMiB == 512 && a.DebugMode }},
		{[]string{"--config", conf(`{"eif_path":"c.eif","memory_mib":512}`)}, eMissingArgument, nil},
		{[]string{"--config", conf(`{"eif_path":"c.eif","memory_mib":512,"cpu_count":2,"cpu_ids":[1]}`)}, eConflictingArgument, nil},
	} {
		a, err := parseRunArgs(tc.args)
		if code(err) != tc.code || (err == nil && !tc.check(a)) {
			t.Errorf("%q: %+v, %v; want E%d", tc.args, a, err, tc.code)
		}
	}
}

// TestRunEnclaveRefusals: nitro-cli's checks before anything starts.
func TestRunEnclaveRefusals(t *testing.T) {
	dir := t.TempDir()
	notEIF := filepath.Join(dir, "x.eif")
	os.WriteFile(notEIF, bytes.Repeat([]byte("not an eif "), 1<<17), 0o600) // 1.4 MiB
	st := state{dir: filepath.Join(dir, "state")}
	for _, tc := range []struct {
		args []string
		code int
	}{
		{[]string{"--eif-path", notEIF, "--cpu-count", "2", "--memory", "5"}, eInsufficientMemory},
		{[]string{"--eif-path", notEIF, "--cpu-count", "2", "--memory", "64"}, eEifParsing},
		{[]string{"--eif-path", filepath.Join(dir, "missing.eif"), "--cpu-count", "2", "--memory", "64"}, eFileOperation},
	} {
		var out bytes.Buffer
		err := runEnclave(st, tc.args, &out, io.Discard)
		if code(err) != tc.code || out.Len() != 0 {
			t.Errorf("%q: %v (printed %q), want E%d", tc.args, err, out.String(), tc.code)
		}
	}
	if l, err := st.list(); len(l) != 0 || err != nil {
		t.Errorf("after refusals: %v, %v", l, err)
	}
}

// TestDescribeJSON: describe-enclaves' objects carry EnclaveRunInfo's
// fields flat, then State, Flags and Measurements, as nitro-cli's do.
func TestDescribeJSON(t *testing.T) {
	e := &enclave{Name: "app", ID: idPrefix + "1", ProcPID: 42, CPUs: 2, CPUIDs: []uint32{1, 2}, Memory: 512}
	var b bytes.Buffer
	if err := printJSON(&b, []describeInfo{{runInfo: e.runInfo(), State: "RUNNING", Flags: "NONE"}}); err != nil {
		t.Fatal(err)
	}
	var got []map[string]any
	if err := json.Unmarshal(b.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	want := []string{"EnclaveName", "EnclaveID", "ProcessID", "EnclaveCID", "NumberOfCPUs", "CPUIDs", "MemoryMiB", "State", "Flags", "Measurements"}
	if len(got) != 1 || len(got[0]) != len(want) {
		t.Fatalf("%s", b.String())
	}
	for _, k := range want {
		if _, ok := got[0][k]; !ok {
			t.Errorf("no %s in %s", k, b.String())
		}
	}
	if got[0]["EnclaveCID"] != float64(1) || !strings.HasPrefix(b.String(), "[\n  {\n    \"EnclaveName\": \"app\",") {
		t.Errorf("%s", b.String())
	}
}
