package kms

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/enclave-storage/enclave-storage/keys"
)

func sealedFrom(t testing.TB, js string) keys.Sealed {
	t.Helper()
	var f map[string]json.RawMessage
	if err := json.Unmarshal([]byte(js), &f); err != nil {
		t.Fatal(err)
	}
	return keys.Sealed{Type: TokenType, Fields: f}
}

func TestParseToken(t *testing.T) {
	long := strings.Repeat("A", 2*maxCiphertext+4)
	tests := []struct {
		name, js string
		ok       bool
	}{
		{"ours", `{"key_arn":"arn:x","ciphertext":"AQID","context":{"a":"b"},"later":1}`, true},
		{"no arn", `{"ciphertext":"AQID","context":{}}`, false},
		{"no ciphertext", `{"key_arn":"arn:x","context":{}}`, false},
		{"empty ciphertext", `{"key_arn":"arn:x","ciphertext":"","context":{}}`, false},
		{"no context", `{"key_arn":"arn:x","ciphertext":"AQID"}`, false},
		{"ciphertext not base64", `{"key_arn":"arn:x","ciphertext":"!!","context":{}}`, false},
		{"ciphertext too long", `{"key_arn":"arn:x","ciphertext":"` + long + `","context":{}}`, false},
		{"arn not a string", `{"key_arn":7,"ciphertext":"AQID","context":{}}`, false},
		{"context not strings", `{"key_arn":"arn:x","ciphertext":"AQID","context":{"a":1}}`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok, err := parseToken(sealedFrom(t, tt.js))
			if tt.ok {
				if err != nil || tok.KeyARN != "arn:x" || string(tok.Ciphertext) != "\x01\x02\x03" || tok.Context["a"] != "b" {
					t.Fatalf("parseToken = %+v, %v", tok, err)
				}
				return
			}
			if !errors.Is(err, ErrToken) {
				t.Fatalf("parseToken = %+v, %v; want ErrToken", tok, err)
			}
		})
	}
	if _, err := parseToken(keys.Sealed{Type: "systemd-tpm2"}); !errors.Is(err, ErrToken) {
		t.Errorf("another token type: %v, want ErrToken", err)
	}
}

// FuzzParseToken: the token comes from the header the parent controls;
// whatever it holds, parseToken returns a bounded token or ErrToken.
func FuzzParseToken(f *testing.F) {
	f.Add([]byte(`{"key_arn":"arn:x","ciphertext":"AQID","context":{"a":"b"}}`))
	f.Add([]byte(`{"key_arn":"","ciphertext":null,"context":[]}`))
	f.Fuzz(func(t *testing.T, js []byte) {
		var fields map[string]json.RawMessage
		if json.Unmarshal(js, &fields) != nil {
			return
		}
		tok, err := parseToken(keys.Sealed{Type: TokenType, Fields: fields})
		if err != nil {
			if !errors.Is(err, ErrToken) {
				t.Fatalf("error %v is not ErrToken", err)
			}
			return
		}
		if tok.KeyARN == "" || len(tok.Ciphertext) == 0 || len(tok.Ciphertext) > maxCiphertext || tok.Context == nil {
			t.Fatalf("accepted an incomplete token %+v", tok)
		}
	})
}
