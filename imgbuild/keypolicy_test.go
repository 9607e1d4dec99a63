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

// statement is a key-policy statement as KMS reads it: plain JSON.
type statement struct {
	Sid       string
	Effect    string
	Principal any
	Action    []string
	Resource  string
	Condition map[string]map[string]string
}

// pcrConds returns the image's PCRs by condition key.
func pcrConds(p eif.PCRs) map[string]string {
	cond := map[string]string{
		"kms:RecipientAttestation:PCR0": strings.ToLower(p.PCR0.String()),
		"kms:RecipientAttestation:PCR1": strings.ToLower(p.PCR1.String()),
		"kms:RecipientAttestation:PCR2": strings.ToLower(p.PCR2.String()),
	}
	if len(p.PCR8) > 0 {
		cond["kms:RecipientAttestation:PCR8"] = strings.ToLower(p.PCR8.String())
	}
	return cond
}

// checkKeyPolicy reads a written kms-key-policy.json as plain JSON and
// checks it against the PCRs of pcrs.json: one Allow for the parent's role
// with all PCRs, and one Deny for everyone per PCR.
func checkKeyPolicy(t *testing.T, path string, p eif.PCRs) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var got []statement
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(&got); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	cond := pcrConds(p)
	want := []statement{{
		Sid:       "EnclaveStorageRunVolumeKey",
		Effect:    "Allow",
		Principal: map[string]any{"AWS": imgbuild.PrincipalPlaceholder},
		Action:    []string{"kms:GenerateDataKey", "kms:Decrypt"},
		Resource:  "*",
		Condition: map[string]map[string]string{"StringEqualsIgnoreCase": cond},
	}}
	for _, n := range []string{"PCR0", "PCR1", "PCR2", "PCR8"} {
		k := "kms:RecipientAttestation:" + n
		if v, ok := cond[k]; ok {
			want = append(want, statement{
				Sid:       "EnclaveStorageDenyOther" + n,
				Effect:    "Deny",
				Principal: "*",
				Action:    []string{"kms:Decrypt", "kms:GenerateDataKey", "kms:ReEncryptFrom"},
				Resource:  "*",
				Condition: map[string]map[string]string{"StringNotEqualsIgnoreCase": {k: v}},
			})
		}
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s:\n%s\nwant %+v", path, b, want)
	}
	for k, v := range cond {
		if len(v) != 96 {
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

// denied evaluates the Deny statements of policy for action on a request
// carrying the condition keys ctx (none: no Recipient), by IAM's rules as
// AWS documents them: the keys under one operator are ANDed, and a negated
// operator (StringNotEquals…) is true when its key is absent.
func denied(t *testing.T, policy []imgbuild.KeyPolicyStatement, action string, ctx map[string]string) bool {
	t.Helper()
	for _, s := range policy {
		if s.Effect != "Deny" || s.Principal != "*" || !contains(s.Action, action) {
			continue
		}
		all := true
		for op, keys := range s.Condition {
			if op != "StringNotEqualsIgnoreCase" {
				t.Fatalf("%s: operator %s not modelled", s.Sid, op)
			}
			for k, v := range keys {
				got, ok := ctx[k]
				all = all && (!ok || !strings.EqualFold(got, v))
			}
		}
		if all {
			return true
		}
	}
	return false
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// TestKeyPolicyDenies: whatever IAM allows, the Deny statements refuse the
// data key to a call without attestation and to an enclave differing from
// the image in any one PCR, and let the image's own enclave through.
func TestKeyPolicyDenies(t *testing.T) {
	pcr := func(b byte) eif.Hex { return eif.Hex(bytes.Repeat([]byte{b}, 48)) }
	img := eif.PCRs{PCR0: pcr(0xa0), PCR1: pcr(0xb1), PCR2: pcr(0xc2), PCR8: pcr(0xd8)}
	own := pcrConds(img)
	with := func(k, v string) map[string]string {
		m := map[string]string{}
		for a, b := range own {
			m[a] = b
		}
		m[k] = v
		return m
	}
	other := strings.Repeat("ee", 48)
	tests := []struct {
		name   string
		action string
		ctx    map[string]string
		deny   bool
	}{
		{"own enclave decrypts", "kms:Decrypt", own, false},
		{"own enclave, upper-case hex", "kms:GenerateDataKey", with("kms:RecipientAttestation:PCR0", strings.ToUpper(own["kms:RecipientAttestation:PCR0"])), false},
		{"parent without attestation", "kms:Decrypt", nil, true},
		{"re-encrypt to another key", "kms:ReEncryptFrom", nil, true},
		{"other PCR0 only", "kms:Decrypt", with("kms:RecipientAttestation:PCR0", other), true},
		{"other PCR1 only", "kms:GenerateDataKey", with("kms:RecipientAttestation:PCR1", other), true},
		{"other PCR2 only", "kms:Decrypt", with("kms:RecipientAttestation:PCR2", other), true},
		{"other signer (PCR8) only", "kms:Decrypt", with("kms:RecipientAttestation:PCR8", other), true},
		{"describe is not this policy's business", "kms:DescribeKey", nil, false},
	}
	policy := imgbuild.KeyPolicy(img)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := denied(t, policy, tt.action, tt.ctx); got != tt.deny {
				t.Errorf("denied = %v, want %v", got, tt.deny)
			}
		})
	}
	// The reason for one Deny per PCR: the same keys under one operator
	// (ANDed) would let an enclave differing in one PCR through.
	merged := imgbuild.KeyPolicyStatement{Effect: "Deny", Principal: "*", Action: []string{"kms:Decrypt"},
		Condition: map[string]map[string]string{"StringNotEqualsIgnoreCase": own}}
	if denied(t, []imgbuild.KeyPolicyStatement{merged}, "kms:Decrypt", with("kms:RecipientAttestation:PCR0", other)) {
		t.Error("model: a single Deny with all PCRs ANDed denied a one-PCR difference; the per-PCR split would be needless")
	}
}
