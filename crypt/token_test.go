package crypt

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"strings"
	"testing"
)

// kmsToken is the shape of token the enclave's kms: provider writes.
func kmsToken(slots ...int) Token {
	return Token{Type: "enclave-storage-kms", Keyslots: slots, Fields: map[string]json.RawMessage{
		"key_arn":    json.RawMessage(`"arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"`),
		"ciphertext": json.RawMessage(`"AQIDBAUGBwgJ<&>"`),
		"context":    json.RawMessage(`{"export":"run","uuid":"x"}`),
	}}
}

// sameJSON reports whether a and b decode to the same value.
func sameJSON(t *testing.T, a, b []byte) bool {
	t.Helper()
	var va, vb any
	if err := json.Unmarshal(a, &va); err != nil {
		t.Fatalf("%s: %v", a, err)
	}
	if err := json.Unmarshal(b, &vb); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	return reflect.DeepEqual(va, vb)
}

func sameToken(t *testing.T, got, want Token) bool {
	t.Helper()
	if got.Type != want.Type || !reflect.DeepEqual(got.Keyslots, want.Keyslots) || len(got.Fields) != len(want.Fields) {
		return false
	}
	for k, v := range want.Fields {
		if !bytes.Equal(got.Fields[k], v) {
			return false
		}
	}
	return true
}

func TestTokens(t *testing.T) {
	key := []byte("k")
	f, _ := sparseFile(t, t.TempDir(), "img", 20<<20)
	if _, err := Format(bg, f, key, &FormatOptions{KDF: fastPBKDF2, Tokens: []Token{kmsToken(0)}}); err != nil {
		t.Fatal(err)
	}
	in, err := ReadInfo(bg, f)
	if err != nil {
		t.Fatal(err)
	}
	if len(in.Tokens) != 1 || !sameToken(t, in.Tokens[0], kmsToken(0)) {
		t.Fatalf("Tokens after Format = %+v", in.Tokens)
	}
	seq := in.SeqID

	second := Token{Type: "other", Keyslots: []int{}}
	id, err := AddToken(bg, f, second)
	if err != nil || id != 1 {
		t.Fatalf("AddToken = %d, %v", id, err)
	}
	in, err = ReadInfo(bg, f)
	if err != nil {
		t.Fatal(err)
	}
	if in.SeqID != seq+1 || len(in.Tokens) != 2 || !sameToken(t, in.Tokens[1], second) {
		t.Fatalf("after AddToken: seqid %d (was %d), tokens %+v", in.SeqID, seq, in.Tokens)
	}
	// Both copies carry it: the secondary alone reads the same.
	if err := zeroRange(bg, f, 0, 4096); err != nil {
		t.Fatal(err)
	}
	if in2, err := ReadInfo(bg, f); err != nil || in2.HeaderOffset != metadataSize || len(in2.Tokens) != 2 {
		t.Fatalf("secondary copy: %+v, %v", in2, err)
	}

	if err := RemoveToken(bg, f, 0); err != nil {
		t.Fatal(err)
	}
	in, err = ReadInfo(bg, f)
	if err != nil {
		t.Fatal(err)
	}
	if len(in.Tokens) != 1 || in.Tokens[1].Type != "other" || in.SeqID != seq+2 || in.HeaderOffset != 0 {
		t.Fatalf("after RemoveToken: %+v", in)
	}
	if id, err := AddToken(bg, f, kmsToken(0)); err != nil || id != 0 {
		t.Fatalf("AddToken reuses id 0: %d, %v", id, err)
	}
	if _, err := Open(bg, f, key); err != nil {
		t.Fatalf("Open with tokens: %v", err)
	}
}

func TestTokenErrors(t *testing.T) {
	key := []byte("k")
	tests := []struct {
		name string
		tok  Token
	}{
		{"no type", Token{Keyslots: []int{0}}},
		{"reserved type", Token{Type: "luks2-keyring", Keyslots: []int{0}}},
		{"missing keyslot", Token{Type: "x", Keyslots: []int{3}}},
		{"negative keyslot", Token{Type: "x", Keyslots: []int{-1}}},
		{"type in Fields", Token{Type: "x", Fields: map[string]json.RawMessage{"type": json.RawMessage(`"y"`)}}},
		{"keyslots in Fields", Token{Type: "x", Fields: map[string]json.RawMessage{"keyslots": json.RawMessage(`[]`)}}},
		{"invalid JSON field", Token{Type: "x", Fields: map[string]json.RawMessage{"a": json.RawMessage(`{`)}}},
		{"too large for the JSON area", Token{Type: "x", Fields: map[string]json.RawMessage{
			"blob": json.RawMessage(`"` + strings.Repeat("A", metadataSize) + `"`)}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, p := formatted(t, key)
			before := fileBytes(t, p)
			if _, err := AddToken(bg, f, tt.tok); !errors.Is(err, ErrInvalidArgument) {
				t.Fatalf("AddToken: %v, want ErrInvalidArgument", err)
			}
			if !bytes.Equal(before, fileBytes(t, p)) {
				t.Fatal("refused AddToken changed the device")
			}
			f2, p2 := sparseFile(t, t.TempDir(), "img", 20<<20)
			if _, err := Format(bg, f2, key, &FormatOptions{KDF: fastPBKDF2, Tokens: []Token{tt.tok}}); !errors.Is(err, ErrInvalidArgument) {
				t.Fatalf("Format: %v, want ErrInvalidArgument", err)
			}
			if !bytes.Equal(fileBytes(t, p2)[:2*metadataSize], make([]byte, 2*metadataSize)) {
				t.Fatal("refused Format wrote a header")
			}
		})
	}
	t.Run("33 tokens", func(t *testing.T) {
		f, _ := formatted(t, key)
		for i := range maxTokens {
			if id, err := AddToken(bg, f, Token{Type: "t"}); err != nil || id != i {
				t.Fatalf("AddToken #%d = %d, %v", i, id, err)
			}
		}
		if _, err := AddToken(bg, f, Token{Type: "t"}); !errors.Is(err, ErrInvalidArgument) {
			t.Fatalf("33rd AddToken: %v, want ErrInvalidArgument", err)
		}
		toks := make([]Token, maxTokens+1)
		for i := range toks {
			toks[i] = Token{Type: "t"}
		}
		f2, _ := sparseFile(t, t.TempDir(), "img", 20<<20)
		if _, err := Format(bg, f2, key, &FormatOptions{KDF: fastPBKDF2, Tokens: toks}); !errors.Is(err, ErrInvalidArgument) {
			t.Fatalf("Format with 33 tokens: %v", err)
		}
	})
	t.Run("RemoveToken of a missing id", func(t *testing.T) {
		f, _ := formatted(t, key)
		if err := RemoveToken(bg, f, 4); !errors.Is(err, ErrInvalidArgument) {
			t.Fatalf("%v, want ErrInvalidArgument", err)
		}
	})
	t.Run("killing a keyslot unassigns it from tokens", func(t *testing.T) {
		f, _ := formatted(t, key)
		slot, err := AddKey(bg, f, key, []byte("second"), &fastPBKDF2)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := AddToken(bg, f, kmsToken(0, slot)); err != nil {
			t.Fatal(err)
		}
		if err := KillSlot(bg, f, slot); err != nil {
			t.Fatal(err)
		}
		in, err := ReadInfo(bg, f)
		if err != nil {
			t.Fatal(err)
		}
		if want := kmsToken(0); !sameToken(t, in.Tokens[0], want) {
			t.Fatalf("token after KillSlot = %+v, want %+v", in.Tokens[0], want)
		}
	})
}

// TestTokenBadInput: hostile tokens in a checksummed header are refused as
// corrupt, and cryptsetup refuses the same headers (oracle).
func TestTokenBadInput(t *testing.T) {
	key := []byte("key")
	set := func(tok any) func(map[string]any) []byte {
		return func(m map[string]any) []byte {
			obj(m, "tokens")["0"] = tok
			return nil
		}
	}
	tests := []struct {
		name   string
		mutate func(map[string]any) []byte
	}{
		{"not an object", set("x")},
		{"null", set(nil)},
		{"no type", set(map[string]any{"keyslots": []string{"0"}})},
		{"type not a string", set(map[string]any{"type": 7, "keyslots": []string{"0"}})},
		{"no keyslots", set(map[string]any{"type": "x"})},
		{"keyslots not an array", set(map[string]any{"type": "x", "keyslots": "0"})},
		{"keyslot a number", set(map[string]any{"type": "x", "keyslots": []int{0}})},
		{"keyslot missing", set(map[string]any{"type": "x", "keyslots": []string{"5"}})},
		{"keyslot not numbered", set(map[string]any{"type": "x", "keyslots": []string{"01"}})},
		{"token id not numbered", func(m map[string]any) []byte {
			obj(m, "tokens")["a"] = map[string]any{"type": "x", "keyslots": []string{}}
			return nil
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, img := formatted(t, key)
			rewriteJSON(t, f, tt.mutate)
			if _, err := ReadInfo(bg, f); !errors.Is(err, ErrCorruptHeader) {
				t.Fatalf("ReadInfo: %v, want ErrCorruptHeader", err)
			}
			if !cryptsetupInstalled() {
				return
			}
			if out, err := cryptsetup(t, "luksDump", img); err == nil {
				t.Errorf("cryptsetup accepts what we refuse:\n%s", out)
			}
		})
	}
}

// TestTokenOracle: tokens cross between us and cryptsetup both ways.
func TestTokenOracle(t *testing.T) {
	cryptsetupPath(t)
	dir := t.TempDir()
	key := []byte("k")
	f, img := sparseFile(t, dir, "img", 20<<20)
	if _, err := Format(bg, f, key, &FormatOptions{KDF: fastPBKDF2}); err != nil {
		t.Fatal(err)
	}

	// Ours → cryptsetup: luksDump lists it, token export returns it byte
	// for byte (cryptsetup keeps member order; we write type, keyslots,
	// then the fields sorted).
	ours := kmsToken(0)
	id, err := AddToken(bg, f, ours)
	if err != nil {
		t.Fatal(err)
	}
	dump := mustCryptsetup(t, "luksDump", img)
	if !strings.Contains(dump, fmt.Sprintf("Tokens:\n  %d: enclave-storage-kms", id)) {
		t.Errorf("luksDump does not show token %d:\n%s", id, dump)
	}
	exported := mustCryptsetup(t, "token", "export", "--token-id", fmt.Sprint(id), img)
	want, err := ours.marshal()
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(exported) != string(want) {
		t.Errorf("cryptsetup exports %s\nwe wrote           %s", exported, want)
	}

	// cryptsetup → ours: a token imported by cryptsetup reads back.
	// (systemd's token plugin, when installed, validates this shape.)
	theirs := `{"type":"systemd-tpm2","keyslots":["0"],"tpm2-blob":"AAAA","tpm2-pcrs":[7],"tpm2-pcr-bank":"sha256",` +
		`"tpm2-primary-alg":"ecc","tpm2-policy-hash":"00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff","tpm2-pin":false}`
	jf := writeKeyFile(t, dir, "tok.json", []byte(theirs))
	mustCryptsetup(t, "token", "import", "--json-file", jf, "--token-id", "5", img)
	in, err := ReadInfo(bg, f)
	if err != nil {
		t.Fatal(err)
	}
	got, ok := in.Tokens[5]
	if !ok {
		t.Fatalf("token 5 missing: %+v", in.Tokens)
	}
	raw, err := got.marshal()
	if err != nil {
		t.Fatal(err)
	}
	if !sameJSON(t, raw, []byte(theirs)) {
		t.Errorf("read back %s, cryptsetup imported %s", raw, theirs)
	}
	if !slices0(got.Keyslots) || string(got.Fields["tpm2-pcrs"]) != "[7]" {
		t.Errorf("token 5 = %+v", got)
	}
	if !sameToken(t, in.Tokens[id], ours) {
		t.Errorf("our token after cryptsetup's write = %+v", in.Tokens[id])
	}

	// Our later writes keep cryptsetup's token byte for byte.
	if err := RemoveToken(bg, f, id); err != nil {
		t.Fatal(err)
	}
	if exp := mustCryptsetup(t, "token", "export", "--token-id", "5", img); strings.TrimSpace(exp) != theirs {
		t.Errorf("after RemoveToken cryptsetup exports %s, want %s", exp, theirs)
	}
	if out, err := cryptsetup(t, "token", "export", "--token-id", fmt.Sprint(id), img); err == nil {
		t.Errorf("removed token still exported: %s", out)
	}
	if in, err := ReadInfo(bg, f); err != nil || !maps.EqualFunc(in.Tokens, map[int]Token{5: got}, func(a, b Token) bool { return sameToken(t, a, b) }) {
		t.Errorf("ReadInfo after RemoveToken = %+v, %v", in, err)
	}
}

func slices0(s []int) bool { return len(s) == 1 && s[0] == 0 }
