package eif

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"github.com/enclave-storage/enclave-storage/pin"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/tiny.eif and tiny.json")

// tinySpec is the fixed input of testdata/tiny.eif: an app ramdisk built
// by AppRamdisk, a pinned cmdline, SOURCE_DATE_EPOCH-style metadata.
func tinySpec(t *testing.T) *Spec {
	t.Helper()
	var app bytes.Buffer
	a := AppRamdisk{Enclave: []byte("#!/bin/sh\necho not really nbd-enclave\n"), VerityJSON: []byte(`{"root_hash":"4392c1"}`), ModTime: 1700000000}
	if err := a.Write(context.Background(), &app); err != nil {
		t.Fatal(err)
	}
	cmd, err := PinCmdline("console=ttyS0 reboot=k panic=30", []byte{0x43, 0x92, 0xc1})
	if err != nil {
		t.Fatal(err)
	}
	return &Spec{
		Kernel:   strings.NewReader("MZ not really a kernel"),
		Cmdline:  cmd,
		Ramdisks: []Blob{strings.NewReader("bootstrap ramdisk"), bytes.NewReader(app.Bytes())},
		Metadata: Metadata{
			ImageName:      "tiny",
			ImageVersion:   "1.0",
			BuildMetadata:  BuildInfo{BuildTime: "2023-11-14T22:13:20+00:00", BuildTool: "imgbuild", BuildToolVersion: "golden", OperatingSystem: "Linux", KernelVersion: "6.1.0"},
			CustomMetadata: json.RawMessage(`{"purpose": "golden test"}`),
		},
	}
}

// TestGolden guards the on-disk format: Build must reproduce
// testdata/tiny.eif byte for byte, and Read must give the PCRs recorded in
// testdata/tiny.json (nitro-cli build-enclave's JSON shape).
func TestGolden(t *testing.T) {
	var img bytes.Buffer
	pcrs, err := Build(context.Background(), &img, tinySpec(t))
	if err != nil {
		t.Fatal(err)
	}
	js, err := json.MarshalIndent(Measurements{pcrs}, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	js = append(js, '\n')
	eifPath, jsonPath := filepath.Join("testdata", "tiny.eif"), filepath.Join("testdata", "tiny.json")
	if *update {
		if err := os.WriteFile(eifPath, img.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(jsonPath, js, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(eifPath)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(img.Bytes(), want) {
		t.Fatalf("Build output differs from %s (run go test -run TestGolden -update after an intended format change)", eifPath)
	}
	wantJSON, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	if string(js) != string(wantJSON) {
		t.Fatalf("PCRs differ from %s:\n%s", jsonPath, js)
	}
	f, err := Read(bytes.NewReader(want), int64(len(want)))
	if err != nil {
		t.Fatal(err)
	}
	var rec Measurements
	if err := json.Unmarshal(wantJSON, &rec); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(f.PCRs.PCR0, rec.Measurements.PCR0) || !bytes.Equal(f.PCRs.PCR1, rec.Measurements.PCR1) || !bytes.Equal(f.PCRs.PCR2, rec.Measurements.PCR2) {
		t.Fatalf("Read PCRs %+v, recorded %+v", f.PCRs, rec.Measurements)
	}
	// The pinned hash is in the measured cmdline.
	if root, err := pin.VerityRoot(f.Cmdline); err != nil || len(root) != 3 || root[0] != 0x43 {
		t.Fatalf("root %x %v", root, err)
	}
}

// TestPythonOracle checks testdata/tiny.eif and a freshly built image with
// testdata/eifcheck.py, an independent reader written against the Rust
// sources in Python's standard library (hashlib, zlib).
func TestPythonOracle(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not installed; the independent EIF checker needs it")
	}
	dir := t.TempDir()
	spec := testSpec(randBytes(5, 3000), randBytes(6, 5001), randBytes(7, 17))
	img, pcrs := build(t, spec)
	fresh := filepath.Join(dir, "fresh.eif")
	if err := os.WriteFile(fresh, img, 0o644); err != nil {
		t.Fatal(err)
	}
	golden, err := os.ReadFile(filepath.Join("testdata", "tiny.json"))
	if err != nil {
		t.Fatal(err)
	}
	freshJSON, _ := json.MarshalIndent(Measurements{pcrs}, "", "  ")
	for path, want := range map[string]string{filepath.Join("testdata", "tiny.eif"): string(golden), fresh: string(freshJSON) + "\n"} {
		out, err := exec.Command(py, filepath.Join("testdata", "eifcheck.py"), path).CombinedOutput()
		if err != nil {
			t.Fatalf("%s: eifcheck.py: %v\n%s", path, err, out)
		}
		if string(out) != want {
			t.Errorf("%s: python says\n%s\nwant\n%s", path, out, want)
		}
	}
}
