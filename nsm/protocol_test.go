package nsm

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

// cborText returns the CBOR text string header and bytes of a short key.
func cborText(s string) string { return hex.EncodeToString(append([]byte{0x60 | byte(len(s))}, s...)) }

// TestEncodeRequestGolden checks the request bytes against the layout serde
// gives nsm-api's Request::Attestation { user_data, nonce, public_key }
// (Option<ByteBuf>): an externally tagged enum, a one-entry map from the
// variant name to a map of the fields in declaration order, each a byte
// string or null. The golden bytes are written out from RFC 8949, not
// produced by the encoder under test.
func TestEncodeRequestGolden(t *testing.T) {
	head := "a1" + cborText("Attestation") + "a3"
	cases := []struct {
		name string
		r    Request
		want string
	}{
		{"all absent", Request{},
			head + cborText("user_data") + "f6" + cborText("nonce") + "f6" + cborText("public_key") + "f6"},
		{"all present", Request{UserData: []byte{1}, Nonce: []byte{2, 3}, PublicKey: []byte{4}},
			head + cborText("user_data") + "4101" + cborText("nonce") + "420203" + cborText("public_key") + "4104"},
		{"empty is not absent", Request{Nonce: []byte{}},
			head + cborText("user_data") + "f6" + cborText("nonce") + "40" + cborText("public_key") + "f6"},
		{"294-byte SPKI", Request{PublicKey: bytes.Repeat([]byte{0xaa}, 294)},
			head + cborText("user_data") + "f6" + cborText("nonce") + "f6" + cborText("public_key") + "590126" + strings.Repeat("aa", 294)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := encodeRequest(c.r)
			if err != nil {
				t.Fatal(err)
			}
			if hex.EncodeToString(got) != c.want {
				t.Fatalf("encoded\n%x\nwant\n%s", got, c.want)
			}
		})
	}
	// The request head spelled out once in full, to check cborText.
	if head != "a16b4174746573746174696f6ea3" {
		t.Fatalf("head %s", head)
	}
}

func TestEncodeRequestLimits(t *testing.T) {
	big := make([]byte, MaxUserData+1)
	for _, r := range []Request{{UserData: big}, {Nonce: big}, {PublicKey: big}} {
		if _, err := encodeRequest(r); err == nil {
			t.Errorf("request with a %d-byte field accepted", len(big))
		}
	}
	full := make([]byte, MaxUserData)
	b, err := encodeRequest(Request{UserData: full, Nonce: full, PublicKey: full})
	if err != nil {
		t.Fatalf("largest request: %v", err)
	}
	if len(b) > maxRequestSize {
		t.Fatalf("largest request is %d bytes, driver takes %d", len(b), maxRequestSize)
	}
}

// TestDecodeResponse decodes responses laid out as serde writes nsm-api's
// Response: Attestation { document } as {"Attestation": {"document": bstr}},
// Error(ErrorCode) as {"Error": "Name"}.
func TestDecodeResponse(t *testing.T) {
	att := "a1" + cborText("Attestation")
	cases := []struct {
		name    string
		in      string
		doc     string
		code    string
		wantErr error
	}{
		{"document", att + "a1" + cborText("document") + "4384a040", "84a040", "", nil},
		{"error", "a1" + cborText("Error") + cborText("InternalError"), "", "InternalError", ErrDevice},
		{"input too large", "a1" + cborText("Error") + cborText("InputTooLarge"), "", "InputTooLarge", ErrDevice},
		{"other variant", "a1" + cborText("GetRandom") + "a1" + cborText("random") + "4101", "", "", ErrDevice},
		{"unit variant string", cborText("LockPCR"), "", "", ErrDevice},
		{"empty document", att + "a1" + cborText("document") + "40", "", "", ErrDevice},
		{"document not bytes", att + "a1" + cborText("document") + "6161", "", "", ErrDevice},
		{"no document", att + "a0", "", "", ErrDevice},
		{"two variants", "a2" + cborText("Error") + cborText("InternalError") + cborText("LockPCR") + "f6", "", "", ErrDevice},
		{"error code not text", "a1" + cborText("Error") + "01", "", "", ErrDevice},
		{"empty", "", "", "", ErrDevice},
		{"truncated", att + "a1" + cborText("document") + "4384a0", "", "", ErrDevice},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in, _ := hex.DecodeString(c.in)
			doc, err := decodeResponse(in)
			if c.wantErr == nil {
				if err != nil || hex.EncodeToString(doc) != c.doc {
					t.Fatalf("decodeResponse = %x, %v; want %s", doc, err, c.doc)
				}
				return
			}
			if !errors.Is(err, c.wantErr) {
				t.Fatalf("decodeResponse error %v, want %v", err, c.wantErr)
			}
			var de *DeviceError
			if c.code != "" && (!errors.As(err, &de) || de.Code != c.code) {
				t.Fatalf("error %v, want DeviceError %s", err, c.code)
			}
		})
	}
}
