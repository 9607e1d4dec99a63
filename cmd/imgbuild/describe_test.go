package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/json"
	"encoding/pem"
	"hash/crc32"
	"io"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/enclave-storage/enclave-storage/eif"
)

func describeEnv() (*cliEnv, *bytes.Buffer, *bytes.Buffer) {
	var out, errb bytes.Buffer
	return &cliEnv{stdout: &out, stderr: &errb, log: slog.New(slog.NewTextHandler(io.Discard, nil))}, &out, &errb
}

// writeTestEIF builds a small EIF into dir and returns its path and PCRs.
func writeTestEIF(t *testing.T, dir string, custom string) (string, eif.PCRs) {
	t.Helper()
	spec := &eif.Spec{
		Kernel:   strings.NewReader("not really a bzImage"),
		Cmdline:  "console=ttyS0 enclave_storage.verity_root=abcd",
		Ramdisks: []eif.Blob{strings.NewReader("bootstrap"), strings.NewReader("application")},
		Metadata: eif.Metadata{
			ImageName:     "app",
			ImageVersion:  "1.2",
			BuildMetadata: eif.BuildInfo{BuildTime: "1970-01-01T00:00:00+00:00", BuildTool: "imgbuild", BuildToolVersion: "dev", OperatingSystem: "Linux", KernelVersion: "6.1"},
		},
	}
	if custom != "" {
		spec.Metadata.CustomMetadata = json.RawMessage(custom)
	}
	var buf bytes.Buffer
	pcrs, err := eif.Build(context.Background(), &buf, spec)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "test.eif")
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p, pcrs
}

func TestDescribeText(t *testing.T) {
	path, pcrs := writeTestEIF(t, t.TempDir(), "")
	env, out, errb := describeEnv()
	if code := run(context.Background(), env, []string{"describe", path}); code != 0 {
		t.Fatalf("exit %d: %s", code, errb)
	}
	// Compare lines with runs of spaces collapsed.
	var lines []string
	for _, l := range strings.Split(out.String(), "\n") {
		lines = append(lines, strings.Join(strings.Fields(l), " "))
	}
	s := strings.Join(lines, "\n")
	for _, want := range []string{
		"EIF version: 4\n",
		"Flags: 0x0000 (x86_64)\n",
		"Default memory: 1024 MiB\n",
		"Default CPUs: 2\n",
		"Cmdline: console=ttyS0 enclave_storage.verity_root=abcd\n",
		"Image: app 1.2\n",
		"Signed: false\n",
		"\n# Type Offset Size\n0 Kernel 548 20\n1 Cmdline 580 46\n2 Metadata 638 234\n3 Ramdisk 884 9\n4 Ramdisk 905 11\n",
		"Measurements (Sha384 { ... }):\n",
		"PCR0 " + pcrs.PCR0.String(),
		"PCR1 " + pcrs.PCR1.String(),
		"PCR2 " + pcrs.PCR2.String(),
	} {
		if !strings.Contains(s, want) {
			t.Errorf("output lacks %q:\n%s", want, s)
		}
	}
}

func TestDescribeJSON(t *testing.T) {
	path, pcrs := writeTestEIF(t, t.TempDir(), `{"team": "storage", "n": 1}`)
	env, out, errb := describeEnv()
	if code := run(context.Background(), env, []string{"describe", "--json", path}); code != 0 {
		t.Fatalf("exit %d: %s", code, errb)
	}
	var got struct {
		EifVersion   int
		Measurements map[string]string
		IsSigned     bool
		CheckCRC     bool
		ImageName    string
		ImageVersion string
		Metadata     map[string]any
		Sections     []struct {
			Type         string
			Offset, Size int64
		}
	}
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatalf("%v:\n%s", err, out)
	}
	if got.EifVersion != 4 || got.IsSigned || !got.CheckCRC || got.ImageName != "app" || got.ImageVersion != "1.2" {
		t.Errorf("fields: %+v", got)
	}
	want := map[string]string{"HashAlgorithm": "Sha384 { ... }", "PCR0": pcrs.PCR0.String(), "PCR1": pcrs.PCR1.String(), "PCR2": pcrs.PCR2.String()}
	if len(got.Measurements) != len(want) {
		t.Errorf("measurements %v", got.Measurements)
	}
	for k, v := range want {
		if got.Measurements[k] != v {
			t.Errorf("%s = %q, want %q", k, got.Measurements[k], v)
		}
	}
	// nitro-cli flattens CustomMetadata into Metadata.
	if got.Metadata["team"] != "storage" || got.Metadata["BuildTool"] != "imgbuild" || got.Metadata["DockerInfo"] != nil {
		t.Errorf("metadata %v", got.Metadata)
	}
	if len(got.Sections) != 5 || got.Sections[2].Type != "Metadata" || got.Sections[0].Offset != 548 {
		t.Errorf("sections %+v", got.Sections)
	}
	// Key order follows nitro-cli's EifDescribeInfo.
	s := out.String()
	if i, j, k := strings.Index(s, `"EifVersion"`), strings.Index(s, `"Measurements"`), strings.Index(s, `"CheckCRC"`); !(i < j && j < k) {
		t.Errorf("key order:\n%s", s)
	}
}

func TestDescribeErrors(t *testing.T) {
	dir := t.TempDir()
	path, _ := writeTestEIF(t, dir, "")
	img, _ := os.ReadFile(path)
	img[len(img)-1] ^= 1
	bad := filepath.Join(dir, "crc.eif")
	if err := os.WriteFile(bad, img, 0o644); err != nil {
		t.Fatal(err)
	}
	junk := filepath.Join(dir, "junk.eif")
	if err := os.WriteFile(junk, bytes.Repeat([]byte{'x'}, 600), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{[]string{"describe"}, 2, "", "want exactly one EIF file"},
		{[]string{"describe", "a", "b"}, 2, "", "want exactly one"},
		{[]string{"describe", "--help"}, 0, "", "Usage: imgbuild describe FILE.eif"},
		{[]string{"describe", "--bogus", path}, 2, "", "flag provided but not defined"},
		{[]string{"describe", filepath.Join(dir, "missing.eif")}, 1, "", "no such file"},
		{[]string{"describe", junk}, 1, "", "not an EIF file"},
		{[]string{"describe", bad, "--json"}, 1, `"CheckCRC": false`, "CRC32 mismatch"},
		{[]string{"describe", bad}, 1, "MISMATCH", "CRC32 mismatch"},
	}
	for _, tt := range tests {
		env, out, errb := describeEnv()
		code := run(context.Background(), env, tt.args)
		if code != tt.code || !strings.Contains(out.String(), tt.stdout) || !strings.Contains(errb.String(), tt.stderr) {
			t.Errorf("%q: exit %d, stdout %q, stderr %q", tt.args, code, out, errb)
		}
	}
}

func TestDescribeSigned(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7),
		Subject:      pkix.Name{CommonName: "signer", Organization: []string{"enclave-storage"}},
		NotBefore:    time.Date(2023, 11, 14, 22, 13, 20, 0, time.UTC),
		NotAfter:     time.Date(2033, 11, 14, 22, 13, 20, 0, time.UTC),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	spec := &eif.Spec{
		Kernel:   strings.NewReader("kernel"),
		Cmdline:  "console=ttyS0",
		Ramdisks: []eif.Blob{strings.NewReader("bootstrap"), strings.NewReader("application")},
		Signer:   &eif.Signer{CertificatePEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), Key: key},
	}
	var buf bytes.Buffer
	pcrs, err := eif.Build(context.Background(), &buf, spec)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	good := filepath.Join(dir, "signed.eif")
	if err := os.WriteFile(good, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	// Tamper with the application ramdisk and repair the CRC.
	img := bytes.Clone(buf.Bytes())
	i := bytes.Index(img, []byte("application"))
	img[i] = 'A'
	binary.BigEndian.PutUint32(img[544:], crc32.ChecksumIEEE(append(bytes.Clone(img[:544]), img[548:]...)))
	bad := filepath.Join(dir, "tampered.eif")
	if err := os.WriteFile(bad, img, 0o644); err != nil {
		t.Fatal(err)
	}

	type out struct {
		Measurements       map[string]string
		IsSigned, CheckCRC bool
		SignatureCheck     *bool
		SigningCertificate struct {
			IssuerName map[string]string
			Algorithm  string
			NotBefore  string
			NotAfter   string
			Signature  string
		}
	}
	for _, tt := range []struct {
		path  string
		code  int
		check bool
	}{{good, 0, true}, {bad, 1, false}} {
		env, stdout, errb := describeEnv()
		if code := run(context.Background(), env, []string{"describe", "--json", tt.path}); code != tt.code {
			t.Fatalf("%s: exit %d: %s", tt.path, code, errb)
		}
		var got out
		if err := json.Unmarshal(stdout.Bytes(), &got); err != nil {
			t.Fatalf("%v\n%s", err, stdout)
		}
		c := got.SigningCertificate
		if !got.IsSigned || !got.CheckCRC || got.SignatureCheck == nil || *got.SignatureCheck != tt.check ||
			got.Measurements["PCR8"] != pcrs.PCR8.String() || c.IssuerName["commonName"] != "signer" ||
			c.IssuerName["organizationName"] != "enclave-storage" || c.Algorithm != "ecdsa-with-SHA384" ||
			c.NotBefore != "Nov 14 22:13:20 2023 GMT" || c.NotAfter != "Nov 14 22:13:20 2033 GMT" || !strings.Contains(c.Signature, ":") {
			t.Errorf("%s:\n%s", tt.path, stdout)
		}
	}
	env, stdout, _ := describeEnv()
	if code := run(context.Background(), env, []string{"describe", good}); code != 0 || !strings.Contains(stdout.String(), "signature OK") ||
		!strings.Contains(stdout.String(), "PCR8  "+pcrs.PCR8.String()) {
		t.Errorf("text: %d\n%s", code, stdout)
	}
}
