package nsm_test

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/enclave-storage/enclave-storage/nsm"
	"github.com/enclave-storage/enclave-storage/nsm/nsmtest"
	"github.com/fxamacker/cbor/v2"
)

// sample is a fake document split into its COSE parts and payload fields.
type sample struct {
	protected, unprotected, sig cbor.RawMessage
	fields                      map[string]cbor.RawMessage
}

func newSample(t *testing.T) (*sample, []byte) {
	t.Helper()
	ca, err := nsmtest.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	f := &nsmtest.Fake{CA: ca}
	doc, err := f.Attest(context.Background(), nsm.Request{PublicKey: []byte{1}, UserData: []byte{}, Nonce: []byte{3}})
	if err != nil {
		t.Fatal(err)
	}
	var outer []cbor.RawMessage
	if err := cbor.Unmarshal(doc, &outer); err != nil {
		t.Fatal(err)
	}
	var body []byte
	cbor.Unmarshal(outer[2], &body)
	s := &sample{protected: outer[0], unprotected: outer[1], sig: outer[3]}
	if err := cbor.Unmarshal(body, &s.fields); err != nil {
		t.Fatal(err)
	}
	return s, doc
}

func mustCBOR(v any) cbor.RawMessage {
	b, err := cbor.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// doc encodes the sample with field k set to v (deleted when v is nil).
func (s *sample) with(k string, v any) []byte {
	m := make(map[string]cbor.RawMessage, len(s.fields))
	for f, raw := range s.fields {
		m[f] = raw
	}
	switch v := v.(type) {
	case nil:
		delete(m, k)
	case cbor.RawMessage:
		m[k] = v
	default:
		m[k] = mustCBOR(v)
	}
	return s.wrap(s.protected, s.unprotected, mustCBOR([]byte(mustCBOR(m))), s.sig)
}

func (s *sample) wrap(parts ...cbor.RawMessage) []byte {
	return mustCBOR(parts)
}

func TestParse(t *testing.T) {
	s, doc := newSample(t)
	d, err := nsm.Parse(doc)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(d.PublicKey, []byte{1}) || d.UserData == nil || len(d.UserData) != 0 || !bytes.Equal(d.Nonce, []byte{3}) {
		t.Fatalf("Parse = %+v", d)
	}
	// Control: the re-encoding the cases use parses when nothing is wrong,
	// so each case fails for its own change.
	if _, err := nsm.Parse(s.with("module_id", "i-control")); err != nil {
		t.Fatalf("re-encoded sample: %v", err)
	}
	pcr := func(n int) []byte { return make([]byte, n) }
	sig95 := mustCBOR(make([]byte, 95))
	es256 := mustCBOR([]byte(mustCBOR(map[int]int{1: -7})))
	cases := []struct {
		name string
		doc  []byte
	}{
		{"empty", nil},
		{"not an array", mustCBOR(map[string]int{})},
		{"tagged COSE_Sign1", append([]byte{0xd2}, doc...)},
		{"three elements", mustCBOR([]cbor.RawMessage{s.protected, s.unprotected, s.sig})},
		{"ES256 header", s.wrap(es256, s.unprotected, mustCBOR([]byte(mustCBOR(s.fields))), s.sig)},
		{"unprotected header", s.wrap(s.protected, mustCBOR(map[int]int{99: 1}), mustCBOR([]byte(mustCBOR(s.fields))), s.sig)},
		{"95-byte signature", s.wrap(s.protected, s.unprotected, mustCBOR([]byte(mustCBOR(s.fields))), sig95)},
		{"payload not a map", s.wrap(s.protected, s.unprotected, mustCBOR([]byte(mustCBOR([]int{1}))), s.sig)},
		{"oversized", append(bytes.Clone(doc), make([]byte, nsm.MaxDocumentSize)...)},
		{"no module_id", s.with("module_id", nil)},
		{"empty module_id", s.with("module_id", "")},
		{"module_id bytes", s.with("module_id", []byte("i-1"))},
		{"digest SHA256", s.with("digest", "SHA256")},
		{"no timestamp", s.with("timestamp", nil)},
		{"zero timestamp", s.with("timestamp", 0)},
		{"negative timestamp", s.with("timestamp", -1)},
		{"timestamp text", s.with("timestamp", "1")},
		{"null certificate", s.with("certificate", cbor.RawMessage{0xf6})},
		{"certificate 1025 bytes", s.with("certificate", make([]byte, 1025))},
		{"no pcrs", s.with("pcrs", nil)},
		{"no PCRs in map", s.with("pcrs", map[int][]byte{})},
		{"PCR index 32", s.with("pcrs", map[int][]byte{32: pcr(48)})},
		{"PCR index negative", s.with("pcrs", map[int][]byte{-1: pcr(48)})},
		{"PCR text key", s.with("pcrs", map[string][]byte{"0": pcr(48)})},
		{"PCR of 33 bytes", s.with("pcrs", map[int][]byte{0: pcr(33)})},
		{"PCR as array", s.with("pcrs", map[int][]int{0: make([]int, 48)})},
		{"empty cabundle", s.with("cabundle", [][]byte{})},
		{"cabundle of 9", s.with("cabundle", make([][]byte, 9))},
		{"empty cabundle entry", s.with("cabundle", [][]byte{{}})},
		{"empty public_key", s.with("public_key", []byte{})},
		{"user_data 1025 bytes", s.with("user_data", make([]byte, 1025))},
		{"nonce text", s.with("nonce", "n")},
		{"unknown field", s.with("extra", 1)},
		{"duplicate key", s.wrap(s.protected, s.unprotected,
			mustCBOR(dupKey(s.fields)), s.sig)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if d, err := nsm.Parse(c.doc); !errors.Is(err, nsm.ErrMalformed) {
				t.Fatalf("Parse = %+v, %v; want ErrMalformed", d, err)
			}
		})
	}
	// Optional fields may be absent or null.
	for _, k := range []string{"public_key", "user_data", "nonce"} {
		for _, v := range []any{nil, cbor.RawMessage{0xf6}} {
			d, err := nsm.Parse(s.with(k, v))
			if err != nil {
				t.Fatalf("%s %v: %v", k, v, err)
			}
			if (k == "public_key" && d.PublicKey != nil) || (k == "nonce" && d.Nonce != nil) || (k == "user_data" && d.UserData != nil) {
				t.Fatalf("%s absent decoded as present", k)
			}
		}
	}
}

// dupKey encodes the payload map with its first field repeated.
func dupKey(fields map[string]cbor.RawMessage) []byte {
	out := []byte{0xa0 | byte(len(fields)+1)}
	first := true
	for k, v := range fields {
		kv := append(mustCBOR(k), v...)
		out = append(out, kv...)
		if first {
			out = append(out, kv...)
			first = false
		}
	}
	return out
}

// TestParseRealDocument reads the real document's fields.
func TestParseRealDocument(t *testing.T) {
	d, err := nsm.Parse(realDoc(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(d.PublicKey) != 1024 || len(d.UserData) != 1024 || len(d.Nonce) != 1024 {
		t.Errorf("public_key, user_data, nonce of %d, %d, %d bytes; the vector has 1024 each",
			len(d.PublicKey), len(d.UserData), len(d.Nonce))
	}
	for i := range 16 {
		if len(d.PCRs[i]) != 48 {
			t.Errorf("PCR%d of %d bytes", i, len(d.PCRs[i]))
		}
	}
	if d.Timestamp.Location() != time.UTC {
		t.Errorf("Timestamp not in UTC")
	}
}
