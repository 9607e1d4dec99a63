package crypt

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// maxTokens is LUKS2's token limit (cryptsetup's LUKS2_TOKENS_MAX): ids
// 0..31.
const maxTokens = 32

// Token is a LUKS2 token: a JSON object in the header's "tokens" section
// that tells an unlocker where to find the key for some keyslots, as
// systemd-cryptenroll (systemd-tpm2, systemd-fido2) and cryptsetup's token
// plugins write them. crypt stores and returns tokens but does not
// interpret them.
type Token struct {
	// Type names the token's handler, e.g. "enclave-storage-kms". Types
	// starting "luks2-" are cryptsetup's built-in ones.
	Type string
	// Keyslots are the keyslots the token unlocks; each must exist.
	Keyslots []int
	// Fields holds every other member of the token object, kept
	// verbatim (cryptsetup and systemd do the same with fields they do
	// not know).
	Fields map[string]json.RawMessage
}

// parseToken decodes a token object as cryptsetup validates it: an object
// with a string "type" and an array "keyslots" of keyslot ids.
func parseToken(raw json.RawMessage) (Token, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil || m == nil {
		return Token{}, fmt.Errorf("not a JSON object")
	}
	var t Token
	if err := json.Unmarshal(m["type"], &t.Type); err != nil || t.Type == "" {
		return Token{}, fmt.Errorf("missing or non-string type")
	}
	var slots []string
	if err := json.Unmarshal(m["keyslots"], &slots); err != nil || m["keyslots"] == nil || bytes.Equal(m["keyslots"], []byte("null")) {
		return Token{}, fmt.Errorf("missing or malformed keyslots array")
	}
	t.Keyslots = make([]int, 0, len(slots))
	for _, s := range slots {
		n, ok := validID(s)
		if !ok || n >= maxKeyslots {
			return Token{}, fmt.Errorf("keyslot id %q", s)
		}
		t.Keyslots = append(t.Keyslots, n)
	}
	delete(m, "type")
	delete(m, "keyslots")
	if len(m) > 0 {
		t.Fields = m
	}
	return t, nil
}

// marshal encodes t as cryptsetup orders a token: type, keyslots, then the
// other fields (sorted by name).
func (t Token) marshal() (json.RawMessage, error) {
	if t.Type == "" {
		return nil, fmt.Errorf("%w: token without a type", ErrInvalidArgument)
	}
	var b bytes.Buffer
	b.WriteByte('{')
	enc := func(v any) error {
		e := json.NewEncoder(&b)
		e.SetEscapeHTML(false)
		if err := e.Encode(v); err != nil {
			return err
		}
		b.Truncate(b.Len() - 1) // Encode's newline
		return nil
	}
	b.WriteString(`"type":`)
	if err := enc(t.Type); err != nil {
		return nil, err
	}
	ids := make([]string, len(t.Keyslots))
	for i, n := range t.Keyslots {
		ids[i] = strconv.Itoa(n)
	}
	b.WriteString(`,"keyslots":`)
	if err := enc(ids); err != nil {
		return nil, err
	}
	names := make([]string, 0, len(t.Fields))
	for k := range t.Fields {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		if k == "type" || k == "keyslots" {
			return nil, fmt.Errorf("%w: token field %q is set through Type or Keyslots", ErrInvalidArgument, k)
		}
		v := t.Fields[k]
		if !json.Valid(v) {
			return nil, fmt.Errorf("%w: token field %q is not valid JSON", ErrInvalidArgument, k)
		}
		b.WriteByte(',')
		if err := enc(k); err != nil {
			return nil, err
		}
		b.WriteByte(':')
		if err := json.Compact(&b, v); err != nil {
			return nil, fmt.Errorf("%w: token field %q: %v", ErrInvalidArgument, k, err)
		}
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// validateTokens checks the tokens section as cryptsetup does on load:
// numbered ids below 32, each a token object whose keyslots exist.
func (md *metadata) validateTokens() error {
	for id, raw := range md.Tokens {
		if n, ok := validID(id); !ok || n >= maxTokens {
			return corruptf("token id %q", id)
		}
		t, err := parseToken(raw)
		if err != nil {
			return corruptf("token %s: %v", id, err)
		}
		for _, ks := range t.Keyslots {
			if md.Keyslots[strconv.Itoa(ks)] == nil {
				return corruptf("token %s names missing keyslot %d", id, ks)
			}
		}
	}
	return nil
}

// tokens decodes the (validated) tokens section.
func (md *metadata) tokens() map[int]Token {
	out := make(map[int]Token, len(md.Tokens))
	for id, raw := range md.Tokens {
		n, _ := validID(id)
		if t, err := parseToken(raw); err == nil {
			out[n] = t
		}
	}
	return out
}

// encodeToken checks t for writing into a header whose active keyslots
// active reports, and encodes it.
func encodeToken(t Token, active func(slot int) bool) (json.RawMessage, error) {
	if strings.HasPrefix(t.Type, "luks2-") {
		return nil, fmt.Errorf("%w: token type %q is reserved for cryptsetup's built-in tokens", ErrInvalidArgument, t.Type)
	}
	for _, ks := range t.Keyslots {
		if ks < 0 || !active(ks) {
			return nil, fmt.Errorf("%w: token names keyslot %d, which is not active", ErrInvalidArgument, ks)
		}
	}
	return t.marshal()
}

// setToken checks t for writing and stores it under id.
func (md *metadata) setToken(id int, t Token) error {
	raw, err := encodeToken(t, func(n int) bool { return md.Keyslots[strconv.Itoa(n)] != nil })
	if err != nil {
		return err
	}
	md.Tokens[strconv.Itoa(id)] = raw
	return nil
}

// unassignTokens removes keyslot id from every token, as cryptsetup does
// when it destroys a keyslot (a token naming a missing keyslot would make
// the header invalid).
func (md *metadata) unassignTokens(slot string) {
	n, _ := validID(slot)
	for id, raw := range md.Tokens {
		t, err := parseToken(raw)
		if err != nil || !slices.Contains(t.Keyslots, n) {
			continue
		}
		t.Keyslots = slices.DeleteFunc(t.Keyslots, func(k int) bool { return k == n })
		if b, err := t.marshal(); err == nil {
			md.Tokens[id] = b
		}
	}
}

// AddToken stores t in the header on dev under the lowest free token id
// and returns that id. No key is needed (like cryptsetup token import):
// tokens are public metadata. Both header copies are rewritten with a
// higher sequence id.
func AddToken(ctx context.Context, dev Device, t Token) (int, error) {
	h, err := readHeader(ctx, dev)
	if err != nil {
		return -1, err
	}
	id := -1
	for i := range maxTokens {
		if _, used := h.md.Tokens[strconv.Itoa(i)]; !used {
			id = i
			break
		}
	}
	if id < 0 {
		return -1, fmt.Errorf("%w: all %d token ids in use", ErrInvalidArgument, maxTokens)
	}
	if err := h.md.setToken(id, t); err != nil {
		return -1, err
	}
	h.bin.seqID++
	if err := h.write(ctx, dev, rand.Reader); err != nil {
		return -1, err
	}
	return id, nil
}

// RemoveToken deletes token id from the header on dev, rewriting both
// copies with a higher sequence id. The keyslots it named stay.
func RemoveToken(ctx context.Context, dev Device, id int) error {
	h, err := readHeader(ctx, dev)
	if err != nil {
		return err
	}
	key := strconv.Itoa(id)
	if _, ok := h.md.Tokens[key]; !ok {
		return fmt.Errorf("%w: token %d does not exist", ErrInvalidArgument, id)
	}
	delete(h.md.Tokens, key)
	h.bin.seqID++
	return h.write(ctx, dev, rand.Reader)
}
