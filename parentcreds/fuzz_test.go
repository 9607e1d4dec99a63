package parentcreds

import (
	"testing"
)

// FuzzParse feeds the enclave's parser what a hostile parent could send:
// it must never panic, and anything it accepts has both key parts.
func FuzzParse(f *testing.F) {
	f.Add([]byte(`{"AccessKeyId":"A","SecretAccessKey":"s","Token":"t","Expiration":"2026-12-02T03:00:00Z","Region":"us-east-1"}`))
	f.Add([]byte(`{"Error":"x"}`))
	f.Add([]byte(`{"AccessKeyId":"A"} {}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := Parse(b)
		if err == nil && (r.AccessKeyId == "" || r.SecretAccessKey == "") {
			t.Fatalf("accepted %q without key parts", b)
		}
	})
}
