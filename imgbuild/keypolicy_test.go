package imgbuild_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/enclave-storage/enclave-storage/eif"
	"github.com/enclave-storage/enclave-storage/imgbuild"
)

// checkKeyPolicy reads a written kms-key-policy.json as plain JSON and
// checks it against the PCRs of pcrs.json.
func checkKeyPolicy(t *testing.T, path string, p eif.PCRs) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	if err := d.Decode(&got); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	cond := map[string]any{
		"kms:RecipientAttestation:PCR0": strings.ToLower(p.PCR0.String()),
		"kms:RecipientAttestation:PCR1": strings.ToLower(p.PCR1.String()),
		"kms:RecipientAttestation:PCR2": strings.ToLower(p.PCR2.String()),
	}
	if len(p.PCR8) > 0 {
		cond["kms:RecipientAttestation:PCR8"] = p.PCR8.String()
	}
	want := map[string]any{
		"Sid":       "EnclaveStorageRunVolumeKey",
		"Effect":    "Allow",
		"Principal": map[string]any{"AWS": imgbuild.PrincipalPlaceholder},
		"Action":    []any{"kms:GenerateDataKey", "kms:Decrypt"},
		"Resource":  "*",
		"Condition": map[string]any{"StringEqualsIgnoreCase": cond},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s:\n%s\nwant %v", path, b, want)
	}
	for k, v := range cond {
		if len(v.(string)) != 96 {
			t.Errorf("%s = %q: not 48 bytes of hex", k, v)
		}
	}
}

func TestWriteKeyPolicy(t *testing.T) {
	pcr := func(b byte) eif.Hex { return eif.Hex(bytes.Repeat([]byte{b}, 48)) }
	tests := []struct {
		name string
		pcrs eif.PCRs
	}{
		{"unsigned", eif.PCRs{PCR0: pcr(0xa0), PCR1: pcr(0xb1), PCR2: pcr(0xc2)}},
		{"signed", eif.PCRs{PCR0: pcr(0xa0), PCR1: pcr(0xb1), PCR2: pcr(0xc2), PCR8: pcr(0xd8)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), imgbuild.KeyPolicyFile)
			if err := imgbuild.WriteKeyPolicy(path, tt.pcrs); err != nil {
				t.Fatal(err)
			}
			checkKeyPolicy(t, path, tt.pcrs)
		})
	}
}
