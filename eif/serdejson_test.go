package eif

import (
	"bytes"
	"encoding/json"
	"strconv"
	"testing"
	"time"
)

// TestRyuFormat checks ryuFormat against the ryu crate's own expectations
// (tests/d2s_test.rs, "check!(value, pretty)") and serde_json's
// test_write_f64 — vectors written by others, not derived from this code.
func TestRyuFormat(t *testing.T) {
	tests := []struct{ in, want string }{
		// ryu tests/d2s_test.rs
		{"3E-1", "0.3"},
		{"1.234E15", "1234000000000000.0"},
		{"1.234E16", "1.234e16"},
		{"2.71828E0", "2.71828"},
		{"1.1E128", "1.1e128"},
		{"1.1E-64", "1.1e-64"},
		{"5E-324", "5e-324"},
		{"1.7976931348623157E308", "1.7976931348623157e308"},
		{"0E0", "0.0"},
		{"-0E0", "-0.0"},
		{"1E0", "1.0"},
		{"-1E0", "-1.0"},
		{"2.2250738585072014E-308", "2.2250738585072014e-308"},
		{"2.9802322387695312E-8", "2.9802322387695312e-8"},
		{"-2.109808898695963E16", "-2.109808898695963e16"},
		{"9.0608011534336E15", "9060801153433600.0"},
		{"4.708356024711512E18", "4.708356024711512e18"},
		{"1.2345678901234567E0", "1.2345678901234567"},
		{"5.764607523034235E39", "5.764607523034235e39"},
		{"1.8014398509481984E16", "1.8014398509481984e16"},
		{"3.196104012172126E-27", "3.196104012172126e-27"},
		// serde_json tests/test.rs test_write_f64
		{"3.0", "3.0"},
		{"3.1", "3.1"},
		{"-1.5", "-1.5"},
		{"0.5", "0.5"},
		{"2.220446049250313e-16", "2.220446049250313e-16"},
	}
	for _, tt := range tests {
		f, err := strconv.ParseFloat(tt.in, 64)
		if err != nil {
			t.Fatal(err)
		}
		if got := ryuFormat(f); got != tt.want {
			t.Errorf("ryuFormat(%s) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

// TestSerdeValue checks how DockerInfo and CustomMetadata are re-encoded:
// serde_json::Value's sorted object keys, its integer/float split, and
// serde_json's string escapes (test_write_char, test_write_object).
func TestSerdeValue(t *testing.T) {
	tests := []struct{ in, want string }{
		{``, `null`},
		{`null`, `null`},
		{`{"b": 1, "a": {"d": [true, null], "c": "x"}}`, `{"a":{"c":"x","d":[true,null]},"b":1}`},
		{`{"B":1,"a":2,"_":3}`, `{"B":1,"_":3,"a":2}`},
		{`{"a":1,"a":2}`, `{"a":2}`},
		{`[18446744073709551615, -9223372036854775808, 18446744073709551616, -0, 0, 1.50, 1e2, 1E-7]`,
			`[18446744073709551615,-9223372036854775808,1.8446744073709552e19,-0.0,0,1.5,100.0,1e-7]`},
		{`{"b":[{"c":"\f\u001f\r"},{"d":""}]}`, `{"b":[{"c":"\f\u001f\r"},{"d":""}]}`},
		{`"\u000b\b\t\n\"\\/ <&> \u2028 \u007f \u03a3"`, "\"\\u000b\\b\\t\\n\\\"\\\\/ <&> \u2028 \u007f \u03a3\""},
	}
	for _, tt := range tests {
		var b bytes.Buffer
		if err := serdeValue(&b, json.RawMessage(tt.in)); err != nil {
			t.Errorf("%s: %v", tt.in, err)
			continue
		}
		if b.String() != tt.want {
			t.Errorf("%s:\n got %s\nwant %s", tt.in, b.String(), tt.want)
		}
	}
	for _, bad := range []string{`{`, `1 2`, `1e400`, "\"\xff\""} {
		var b bytes.Buffer
		if err := serdeValue(&b, json.RawMessage(bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// TestMetadataLayout checks the whole section: EifIdentityInfo's fields in
// declaration order, compact, nested Values sorted.
func TestMetadataLayout(t *testing.T) {
	m := Metadata{
		ImageName:    "app",
		ImageVersion: "sha256:ab",
		BuildMetadata: BuildInfo{BuildTime: FormatBuildTime(time.Unix(1700000000, 5e8)), BuildTool: "imgbuild", BuildToolVersion: "dev",
			OperatingSystem: "Linux", KernelVersion: "6.1.0"},
		DockerInfo:     json.RawMessage(`{"Os":"linux","Architecture":"amd64"}`),
		CustomMetadata: json.RawMessage(`{"z": 1, "a": "<tag>"}`),
	}
	got, err := m.marshal()
	if err != nil {
		t.Fatal(err)
	}
	want := `{"ImageName":"app","ImageVersion":"sha256:ab","BuildMetadata":{"BuildTime":"2023-11-14T22:13:20.500+00:00","BuildTool":"imgbuild","BuildToolVersion":"dev","OperatingSystem":"Linux","KernelVersion":"6.1.0"},"DockerInfo":{"Architecture":"amd64","Os":"linux"},"CustomMetadata":{"a":"<tag>","z":1}}`
	if string(got) != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

// TestFormatBuildTime checks chrono's to_rfc3339 (SecondsFormat::AutoSi)
// forms: no fraction, or 3, 6 or 9 digits, always "+00:00".
func TestFormatBuildTimeAutoSi(t *testing.T) {
	tests := []struct {
		ns   int64
		want string
	}{
		{0, "2023-11-14T22:13:20+00:00"},
		{120_000_000, "2023-11-14T22:13:20.120+00:00"},
		{123_456_000, "2023-11-14T22:13:20.123456+00:00"},
		{123_456_789, "2023-11-14T22:13:20.123456789+00:00"},
		{1, "2023-11-14T22:13:20.000000001+00:00"},
	}
	for _, tt := range tests {
		in := time.Unix(1700000000, tt.ns).In(time.FixedZone("X", 3600))
		if got := FormatBuildTime(in); got != tt.want {
			t.Errorf("%d ns: %s, want %s", tt.ns, got, tt.want)
		}
	}
}

func FuzzSerdeValue(f *testing.F) {
	f.Add([]byte(`{"b":[1,2.5,-0,"x\u0001"],"a":null}`))
	f.Add([]byte(`1e308`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		var b bytes.Buffer
		if err := serdeValue(&b, raw); err != nil {
			return
		}
		// The output is valid JSON and re-encodes to itself.
		if !json.Valid(b.Bytes()) {
			t.Fatalf("%q gave invalid JSON %q", raw, b.Bytes())
		}
		var again bytes.Buffer
		if err := serdeValue(&again, b.Bytes()); err != nil || again.String() != b.String() {
			t.Fatalf("not a fixed point: %q -> %q -> %q (%v)", raw, b.Bytes(), again.Bytes(), err)
		}
	})
}
